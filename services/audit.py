"""Writing the audit log. The row joins the caller's transaction, so an action and its record
are committed together or not at all."""

from __future__ import annotations

from typing import Any

from flask import has_request_context

from models import AuditEvent, User, db
from services.client import client_ip, user_agent


def record(
    event: str,
    *,
    actor: User | None = None,
    subject: User | None = None,
    **details: Any,
) -> AuditEvent:
    row = AuditEvent(
        event=event,
        actor_id=actor.id if actor else None,
        subject_id=subject.id if subject else None,
        ip=client_ip() if has_request_context() else "",
        user_agent=user_agent() if has_request_context() else "cli",
        details=details,
    )
    db.session.add(row)
    return row
