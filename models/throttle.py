"""Failure counters that hold across processes: one row per throttled key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models import Base
from models.types import UTCDateTime


class SignInThrottle(Base):
    __tablename__ = "sign_in_throttles"

    # "email:<sha256 of the normalised address>" or "ip:<address>": hashing the email means
    # unknown addresses are throttled exactly like known ones, and no address is stored.
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
