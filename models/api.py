"""API tokens (ADM-10) and the API's request counters (OPS-3)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models import Base
from models.types import UTCDateTime, utcnow
from models.user import User

ACTIVE = "active"
EXPIRED = "expired"
REVOKED = "revoked"


class ApiToken(Base):
    """A bearer token of one API user. The secret is shown once; only its SHA-256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(80))
    # SHA-256 of a 256-bit random secret: nobody can search that space, so a slow or keyed
    # hash would add cost on every request and no protection (services/api_access.py).
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who made or revoked it; NULL from the command line, and if that admin is deleted.
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Written at most once a minute (MFA_API_TOKEN_TOUCH_EVERY), not on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_ip: Mapped[str] = mapped_column(String(45), default="")

    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined", innerjoin=True)

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return REVOKED
        if now >= self.expires_at:
            return EXPIRED
        return ACTIVE


class ApiRateCounter(Base):
    """One fixed-window request counter of the API's rate limit, when the limit is counted in
    the database (no MFA_RATELIMIT_STORAGE_URI): shared by every worker and instance."""

    __tablename__ = "api_rate_counters"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    hits: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
