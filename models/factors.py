"""Second factors: enrolled factors, a setup in progress, recovery codes (FAC, WIZ).

Nothing here is usable on its own: TOTP secrets are encrypted with a key kept outside the
database, recovery codes are keyed hashes (services/crypto.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models import Base
from models.types import UTCDateTime, utcnow

TOTP = "totp"
EMAIL = "email"
SMS = "sms"


class MfaFactor(Base):
    __tablename__ = "mfa_factors"
    # One factor per kind: a new one replaces the old only once proved (services/enrolment).
    __table_args__ = (Index("ix_mfa_factors_user_kind", "user_id", "kind", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    is_default: Mapped[bool] = mapped_column(default=False)
    # TOTP: the Fernet token of the base32 secret.
    secret_encrypted: Mapped[str | None] = mapped_column(Text)
    # Email and SMS: the confirmed address or E.164 number codes are sent to.
    target: Mapped[str | None] = mapped_column(String(254))
    # TOTP: the last time step accepted. Codes of this step or earlier are refused (FAC-1);
    # the conditional UPDATE on it is what makes two racing requests see one success.
    last_step: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MfaSetup(Base):
    """A setup wizard in progress: at most one per user.

    The secret being enrolled lives here (encrypted) until a code proves it; the recovery
    codes to show live here (encrypted) until the wizard ends. ``stage`` is the furthest step
    the user may open; the client cannot move it.
    """

    __tablename__ = "mfa_setups"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8))
    stage: Mapped[str] = mapped_column(String(16))
    secret_encrypted: Mapped[str | None] = mapped_column(Text)
    # Email and SMS: the address or number being confirmed.
    target: Mapped[str | None] = mapped_column(String(254))
    # SMS: the person asked for the number being confirmed to become their profile's.
    target_to_profile: Mapped[bool] = mapped_column(default=False)
    recovery_codes_encrypted: Mapped[str | None] = mapped_column(Text)
    # Begun by a signed-in person (their security page), not by a sign-in that owes a factor:
    # the wizard then ends back on the security page instead of completing a sign-in.
    adding: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
