"""Server-side sign-in sessions (AUTH-3, AUTH-6): one row per sign-in.

The browser's cookie holds only a random token; the row holds its SHA-256, so a copy of the
database cannot be replayed as a cookie. A row starts ``pending`` when the password passes and
a second factor (or setup) is still owed, becomes ``active`` under a new token when it is paid,
and ends as ``ended`` with its token erased. Ended rows are kept as sign-in history (last
sign-in, devices used) and pruned by ``flask sessions prune``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, func, select
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from models import Base
from models.types import UTCDateTime, utcnow
from models.user import User

PENDING = "pending"
ACTIVE = "active"
ENDED = "ended"

# What a pending session is waiting for.
STEP_CHALLENGE = "challenge"
STEP_SETUP = "setup"


class UserSession(Base):
    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_user_signed_in", "user_id", "signed_in_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL once ended; both databases allow many NULLs under a unique constraint.
    token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(8), default=PENDING)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    signed_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(255), default="")

    # Only meaningful while pending.
    pending_step: Mapped[str | None] = mapped_column(String(16))
    pending_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pending_next: Mapped[str | None] = mapped_column(String(2048))
    # Set when policy lets the user decline or postpone setup (Optional mode).
    setup_skippable: Mapped[bool] = mapped_column(default=False)
    failed_codes: Mapped[int] = mapped_column(default=0)
    # How the second step was satisfied: "totp", "recovery", "device", "none", ...
    mfa_method: Mapped[str | None] = mapped_column(String(16))
    # When the person last proved who they are here (password or code): changes to their
    # factors and settings need this to be recent (ACC-3, services/sessions.is_fresh).
    fresh_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)

    @property
    def is_pending(self) -> bool:
        return self.state == PENDING


# users.last_sign_in_at: the newest session that became active, loaded only when asked for.
# A query rather than a column, so completing a sign-in writes one row, not two (PERF-2).
User.last_sign_in_at = column_property(
    select(func.max(UserSession.signed_in_at))
    .where(UserSession.user_id == User.id)
    .correlate_except(UserSession)
    .scalar_subquery(),
    deferred=True,
)
