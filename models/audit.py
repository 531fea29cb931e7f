"""The audit log (AUTH-5, ADM-9): append-only, and the database holds to it.

Nothing in the app updates or deletes an event, and migration 0011 makes the database refuse
both (triggers on SQLite and PostgreSQL), except for a retention purge run from the command
line under a permit (``services.audit.purge_permit``) and ``ON DELETE SET NULL`` when a user
row goes. The indexes serve the viewer's keyset pages: newest first by (created_at, id), alone
and after each filter it offers (services/audit_log.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models import Base
from models.types import UTCDateTime, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_created_at_id", "created_at", "id"),
        Index("ix_audit_events_event_created_at", "event", "created_at", "id"),
        Index("ix_audit_events_actor_id_created_at", "actor_id", "created_at", "id"),
        Index("ix_audit_events_subject_id_created_at", "subject_id", "created_at", "id"),
        Index("ix_audit_events_ip_created_at", "ip", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    event: Mapped[str] = mapped_column(String(64))
    # Who acted and on whom. Deleting a user clears them here (the one update the database
    # allows); the event itself stays.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    subject_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditPurgePermit(Base):
    """SQLite's stand-in for PostgreSQL's ``SET LOCAL clinic_mfa.audit_purge``: while a row
    here says so, the delete trigger lets events older than ``before`` go. The purge inserts
    and deletes it in its own transaction, so no row is ever committed; on PostgreSQL the
    table stays empty. See migration 0011."""

    __tablename__ = "audit_purge_permits"

    id: Mapped[int] = mapped_column(primary_key=True)
    before: Mapped[datetime] = mapped_column(UTCDateTime)
