"""Rollout notices (ADM-3): which notice of which go-live date each person has been sent."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models import Base
from models.types import UTCDateTime, utcnow


class RolloutNotice(Base):
    """One row per (user, role, go-live date, days before). The unique constraint is the claim
    that makes two cron runs send it once; ``sent_at`` stays NULL until the mail server took it,
    so a claim left by a run that died can be taken over (services/rollout_notices.py)."""

    __tablename__ = "rollout_notices"
    __table_args__ = (UniqueConstraint("user_id", "role_id", "go_live", "days_before"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    go_live: Mapped[date] = mapped_column(Date)
    days_before: Mapped[int] = mapped_column()
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
