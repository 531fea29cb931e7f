"""What the admin-area tests share besides the ``admin`` fixture (conftest.py): reading pages
and the audit log, and the actions on a person's access as their URLs spell them."""

from __future__ import annotations

from html import unescape

import sqlalchemy as sa

from models import AuditEvent, db

# The last segment of /admin/users/<id>/<action>, written out here rather than read from the
# app, so a route that goes missing fails the tests that walk them.
ACTION_SLUGS = (
    "role",
    "bypass",
    "reset-mfa",
    "unlock",
    "forget-devices",
    "sign-out-everywhere",
    "deactivate",
    "reactivate",
    "resend-invitation",
)
# Events only an administrator's change writes.
ADMIN_CHANGES = sa.or_(
    AuditEvent.event.like("admin.%"), AuditEvent.event.in_(["mfa.reset", "user.unlocked"])
)


def text(response) -> str:
    return unescape(response.get_data(as_text=True))


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)
            )
        )


def no_admin_changes(app) -> bool:
    with app.app_context():
        return db.session.scalar(sa.select(AuditEvent).where(ADMIN_CHANGES)) is None
