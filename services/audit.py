"""Writing the audit log. The row joins the caller's transaction, so an action and its record
are committed together or not at all.

The log is append-only (models/audit.py, migration 0011): the one way to remove events is a
retention purge from the command line, through ``purge_permit``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any, Protocol

from flask import has_request_context
from sqlalchemy import delete, func, insert, select

from models import AuditEvent, AuditPurgePermit, User, db
from models.types import utcnow
from services import localtime
from services.client import client_ip, user_agent

_INSERT = insert(AuditEvent.__table__)
# PostgreSQL's setting that the triggers read; see migration 0011.
PURGE_SETTING = "clinic_mfa.audit_purge"
EVERYTHING = datetime.max.replace(tzinfo=UTC)


def record(
    event: str,
    *,
    actor: User | None = None,
    subject: User | None = None,
    ip: str | None = None,
    agent: str | None = None,
    **details: Any,
) -> None:
    """Append an event. A plain INSERT in the caller's transaction: the ORM's unit of work
    would cost more than the statement, and nothing reads the row back."""
    if db.session.new:
        db.session.flush()  # the actor or subject may have just been added
    in_request = has_request_context()
    db.session.execute(
        _INSERT,
        {
            "created_at": utcnow(),
            "event": event,
            "actor_id": actor.id if actor else None,
            "subject_id": subject.id if subject else None,
            # Given explicitly when the request is over (work done after the response).
            "ip": ip if ip is not None else (client_ip() if in_request else ""),
            "user_agent": agent if agent is not None else (user_agent() if in_request else "cli"),
            "details": details,
        },
    )


class Diff(Protocol):
    """A change to settings: the old and new value of each one that changed."""

    before: dict[str, Any]
    after: dict[str, Any]


def record_change(event: str, change: Diff, **fields: Any) -> bool:
    """Append ``event`` with before and after, if anything changed; say whether it did."""
    if not change.after:
        return False
    record(event, before=change.before, after=change.after, **fields)
    return True


@contextmanager
def purge_permit(before: datetime) -> Iterator[None]:
    """Inside this block, and in this transaction only, the database lets events created
    before ``before`` be deleted (``EVERYTHING``: all of them, and TRUNCATE on PostgreSQL).

    PostgreSQL: the setting is transaction-local (``set_config(..., true)``, i.e. SET LOCAL)
    and cleared again on the way out. SQLite: a permit row inserted here and deleted on the
    way out, before anything commits, so no other connection ever sees it. An error inside
    rolls the whole transaction back: the permit cannot outlive it either way.
    """
    postgresql = db.engine.dialect.name == "postgresql"
    if postgresql:
        value = "infinity" if before == EVERYTHING else before.isoformat()
        db.session.execute(select(func.set_config(PURGE_SETTING, value, True)))
    else:
        db.session.execute(insert(AuditPurgePermit).values(before=before))
    try:
        yield
    except BaseException:
        db.session.rollback()
        raise
    if postgresql:
        db.session.execute(select(func.set_config(PURGE_SETTING, "", True)))
    else:
        db.session.execute(delete(AuditPurgePermit))


def count_before(day: date) -> int:
    """How many events ``purge(day)`` would delete."""
    cutoff = localtime.start_of(day)
    query = select(func.count()).select_from(AuditEvent).where(AuditEvent.created_at < cutoff)
    return db.session.scalar(query) or 0


def purge(before_day: date) -> int:
    """Delete the events from before the clinic's ``before_day`` (retention), then record
    that, so the purge itself is the oldest thing nobody can remove quietly. The caller
    commits; returns how many events went."""
    cutoff = localtime.start_of(before_day)
    with purge_permit(cutoff):
        deleted = db.session.execute(
            delete(AuditEvent)
            .where(AuditEvent.created_at < cutoff)
            .execution_options(synchronize_session=False)
        ).rowcount
    record("audit.purged", before=before_day.isoformat(), deleted=deleted or 0, via="cli")
    return deleted or 0
