"""One-time codes sent by email or SMS (FAC-2 to FAC-4), and single-use emailed links: password
resets (AUTH-7) and invitations to new staff.

Only keyed hashes are stored; a row is also the record that limits how often codes are sent.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from models import Base
from models.types import UTCDateTime, utcnow

PURPOSE_SIGN_IN = "sign_in"
PURPOSE_SETUP = "setup"

# What an emailed link is for (PasswordResetToken.purpose): each purpose only opens its own
# page, and voiding or counting links stays within one purpose.
LINK_PASSWORD_RESET = "password_reset"  # noqa: S105 - a purpose, not a password
LINK_INVITATION = "invitation"


class OneTimeCode(Base):
    __tablename__ = "one_time_codes"
    __table_args__ = (
        Index("ix_one_time_codes_user_created", "user_id", "created_at"),
        Index("ix_one_time_codes_target_created", "target", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # A sign-in code is good only for the pending sign-in that asked for it.
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_sessions.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(8))
    # The address or E.164 number the code went to; counted for the per-number send limit.
    target: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    wrong_tries: Mapped[int] = mapped_column(default=0)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when a newer code replaced this one: a new code voids the old (FAC-4).
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PasswordResetToken(Base):
    """A single-use emailed link that lets its holder choose a password: "Forgot password?"
    or an invitation (services/emailed_links.py). The table kept its first purpose's name."""

    __tablename__ = "password_reset_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16), default=LINK_PASSWORD_RESET)
    # SHA-256 of a 256-bit random token: the link in the email is the only copy.
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
