"""Emails to the user: security notifications (ACC-3, FAC-5, FAC-6, DEV-2), and the notice
before a role's rollout (ADM-3).

Each security email says what happened, when (in the clinic's time zone), from where (address
and browser) and what to do if it was not them. A failed notification is audited and logged,
never allowed to break the action that caused it; callers send after committing, so no lock is
held while a mail server answers.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import current_app, has_request_context

from models import RememberedDevice, User
from models.types import utcnow
from services import audit, localtime, policy
from services.client import client_ip, user_agent
from services.devices import label_for
from services.mail import DeliveryError, send
from services.sms import mask_number


def where_and_when(
    *, ip: str | None = None, agent: str | None = None, at: datetime | None = None
) -> dict[str, Any]:
    """The "when, from where" of a security email: the request's, unless given (work done
    after the response has no request to read them from)."""
    if has_request_context():
        ip = client_ip() if ip is None else ip
        agent = user_agent() if agent is None else agent
    return {
        "when": localtime.when(at or utcnow()),
        "ip": ip or "",
        "browser": label_for(agent) if agent else "",
    }


def _send(user: User, subject: str, template: str, **context: Any) -> bool:
    try:
        send(
            user.email,
            subject,
            template,
            user=user,
            clinic=current_app.config["MFA_CLINIC_NAME"],
            support=policy.current().support_contact,
            **{**where_and_when(), **context},
        )
    except DeliveryError as exc:
        audit.record("mail.failed", subject=user, template=template, error=str(exc)[:200])
        return False
    return True


def factor_locked(user: User, until: datetime | None) -> bool:
    return _send(
        user,
        "Your sign-in code was entered wrongly too many times",
        "factor_locked",
        until=localtime.when(until) if until else None,
    )


def recovery_code_used(user: User, remaining: int, *, devices_forgotten: int = 0) -> bool:
    return _send(
        user,
        "A recovery code was used to sign in",
        "recovery_code_used",
        remaining=remaining,
        devices_forgotten=devices_forgotten,
    )


def factor_added(user: User, method: str, *, replaced: bool = False) -> bool:
    """``method`` is the kind's label for people; ``replaced``: it took the place of one of
    the same kind (a new phone), which stopped working at that moment."""
    return _send(
        user,
        f"{method} was {'replaced' if replaced else 'set up'} for your two-step sign-in",
        "factor_added",
        method=method,
        replaced=replaced,
    )


def mobile_changed(user: User, number: str) -> bool:
    return _send(
        user,
        "The mobile number on your account was changed",
        "mobile_changed",
        shown_as=mask_number(number),
    )


def factor_removed(user: User, *, by_admin: bool) -> bool:
    return _send(
        user,
        "Two-step sign-in was removed from your account",
        "factor_removed",
        by_admin=by_admin,
    )


def device_remembered(user: User, device: RememberedDevice) -> bool:
    return _send(
        user,
        "A device will skip your sign-in code",
        "device_remembered",
        device=device,
        expires=localtime.when(device.expires_at),
    )


def password_changed(user: User, *, sign_in_url: str, by_admin: bool) -> bool:
    return _send(
        user,
        "Your password was changed",
        "password_changed",
        sign_in_url=sign_in_url,
        by_admin=by_admin,
    )


def rollout_notice(user: User, *, role: str, go_live: date, days_left: int, setup_url: str) -> bool:
    """Two-step sign-in becomes required for ``user``'s role on ``go_live`` (ADM-3). Not a
    security event: no "when, from where" and no "if this was not you"."""
    return _send(
        user,
        f"Two-step sign-in is required from {localtime.day(go_live)}",
        "rollout_notice",
        role=role,
        go_live=localtime.day(go_live),
        days_left=days_left,
        setup_url=setup_url,
        when=None,
        warning=False,
    )
