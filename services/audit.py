"""Writing the audit log. The row joins the caller's transaction, so an action and its record
are committed together or not at all."""

from __future__ import annotations

from typing import Any, Protocol

from flask import has_request_context
from sqlalchemy import insert

from models import AuditEvent, User, db
from models.types import utcnow
from services.client import client_ip, user_agent

_INSERT = insert(AuditEvent.__table__)


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
