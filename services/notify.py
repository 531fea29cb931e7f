"""Security notifications to the user. A failed notification is audited and logged, never
allowed to break the action that caused it."""

from __future__ import annotations

from datetime import datetime

from flask import current_app

from models import User
from services import audit, policy
from services.mail import DeliveryError, send


def _send(user: User, subject: str, template: str, **context: object) -> bool:
    try:
        send(
            user.email,
            subject,
            template,
            user=user,
            clinic=current_app.config["MFA_CLINIC_NAME"],
            support=policy.current().support_contact,
            **context,
        )
    except DeliveryError as exc:
        audit.record("mail.failed", subject=user, template=template, error=str(exc)[:200])
        return False
    return True


def factor_locked(user: User, until: datetime | None) -> bool:
    return _send(
        user, "Your sign-in code was entered wrongly too many times", "factor_locked", until=until
    )


def recovery_code_used(user: User, remaining: int) -> bool:
    return _send(
        user, "A recovery code was used to sign in", "recovery_code_used", remaining=remaining
    )


def factor_added(user: User, method: str) -> bool:
    return _send(user, "Two-step sign-in was set up on your account", "factor_added", method=method)
