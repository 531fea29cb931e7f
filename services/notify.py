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


def _send(
    user: User, subject: str, template: str, *, to: str | None = None, **context: Any
) -> bool:
    """Email ``user`` (at ``to`` instead of their account's address when given)."""
    try:
        send(
            to or user.email,
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


def factor_removed(
    user: User, *, by_admin: bool, method: str | None = None, now_default: str | None = None
) -> bool:
    """Everything removed by an administrator (``by_admin``), or one ``method`` removed by the
    person; ``now_default`` is the label of the way they are asked for next, None when two-step
    sign-in is now off for them."""
    if by_admin or now_default is None:
        subject = "Two-step sign-in was removed from your account"
    else:
        subject = f"{method} was removed from your two-step sign-in"
    return _send(
        user,
        subject,
        "factor_removed",
        by_admin=by_admin,
        method=method,
        now_default=now_default,
    )


def default_changed(user: User, method: str) -> bool:
    return _send(user, "Your sign-in code now comes another way", "default_changed", method=method)


def code_target_changed(
    user: User, *, target_noun: str, old_shown: str, new_shown: str, old_mailbox: str | None
) -> bool:
    """Codes now go to another address or number. The account's address is told, and an old
    address that is not the account's too: whoever used it should know it no longer gets them."""
    sent = True
    for to in dict.fromkeys([user.email, old_mailbox or user.email]):
        sent = (
            _send(
                user,
                f"Your sign-in codes now go to a new {target_noun}",
                "code_target_changed",
                to=to,
                target_noun=target_noun,
                old_shown=old_shown,
                new_shown=new_shown,
            )
            and sent
        )
    return sent


def recovery_codes_replaced(user: User, count: int) -> bool:
    return _send(
        user,
        "You have new recovery codes",
        "recovery_codes_replaced",
        count=count,
    )


def devices_forgotten(user: User, *, label: str | None, count: int) -> bool:
    """One remembered device (``label``) or all of them (``count``) will be asked again."""
    return _send(
        user,
        "A remembered device was forgotten" if label else "Your remembered devices were forgotten",
        "devices_forgotten",
        label=label,
        count=count,
    )


def sessions_ended(
    user: User, *, browser: str | None, count: int, devices_forgotten: int = 0
) -> bool:
    """One other session (``browser``) or every other one (``count``) was signed out."""
    return _send(
        user,
        "A device was signed out of your account"
        if browser
        else "Your other devices were signed out",
        "sessions_ended",
        ended_browser=browser,
        count=count,
        devices_forgotten=devices_forgotten,
    )


def device_remembered(user: User, device: RememberedDevice) -> bool:
    return _send(
        user,
        "A device will skip your sign-in code",
        "device_remembered",
        device=device,
        expires=localtime.when(device.expires_at),
    )


def password_changed(
    user: User, *, sign_in_url: str, by_admin: bool, from_account: bool = False
) -> bool:
    """``from_account``: the person changed it on their security page, which stays signed in."""
    return _send(
        user,
        "Your password was changed",
        "password_changed",
        sign_in_url=sign_in_url,
        by_admin=by_admin,
        from_account=from_account,
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


# An administrator's change to someone's access (ADM-6, ADM-7): the subject and what the
# email says, in people's words. Placeholders: {by}, {clinic} and the change's own facts.
ADMIN_CHANGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "role_changed": (
        "Your role was changed to {after}",
        (
            "{by} changed your role on {clinic}'s sign-in from {before} to {after}.",
            "You were signed out everywhere; sign in again to continue.",
        ),
    ),
    "deactivated": (
        "Your account was switched off",
        (
            "{by} switched off your account on {clinic}'s sign-in. You can no longer sign in, "
            "and every device was signed out.",
            "If you think this is a mistake, talk to your clinic's administrator.",
        ),
    ),
    "reactivated": (
        "Your account was switched on again",
        (
            "{by} switched your account on {clinic}'s sign-in on again. You can sign in with "
            "your email address and password.",
        ),
    ),
    "unlocked": (
        "Your sign-in was unlocked",
        (
            "{by} lifted the lock that too many wrong attempts had put on your {what}. You can "
            "sign in again.",
            "If those attempts were not yours, someone may know your password: change it "
            "after you sign in.",
        ),
    ),
    "devices_forgotten": (
        "Your remembered devices were forgotten",
        (
            "{by} made every device that remembered you forget it, and signed you out "
            "everywhere. At your next sign-in on each of them you will be asked for your code "
            "again.",
        ),
    ),
    "signed_out_everywhere": (
        "You were signed out everywhere",
        (
            "{by} signed you out on every device, and no internet address skips your code "
            "any more. Sign in again to continue.",
        ),
    ),
    "bypass_granted": (
        "You may sign in once without your code",
        (
            "{by} let you sign in once without your sign-in code, until {until}, so that you "
            "can set up two-step sign-in again (for example on a new phone).",
            "Your authenticator app, recovery codes and remembered devices no longer work, and "
            "you were signed out everywhere.",
            "Sign in with your email address and password before {until}: you will go "
            "straight to setting up two-step sign-in. After that the one-time pass is used up.",
            "If you did not ask for this, tell your clinic's administrator at once.",
        ),
    ),
}


def changed_by_admin(user: User, change: str, *, by: User | None, **facts: str) -> bool:
    """Tell ``user`` what an administrator (``by``; None: the command line) changed about
    their access. When it happened is said; the admin's address and browser are not theirs."""
    subject, paragraphs = ADMIN_CHANGES[change]
    words = {
        "by": by.display_name if by is not None else "Your clinic's administrator",
        "clinic": current_app.config["MFA_CLINIC_NAME"],
        **facts,
    }
    return _send(
        user,
        subject.format(**words),
        "changed_by_admin",
        paragraphs=[p.format(**words) for p in paragraphs],
        ip="",
        warning=False,
    )
