"""Forgotten passwords (AUTH-7): a single-use emailed link, valid for 30 minutes.

The link carries a 256-bit random token; only its SHA-256 is stored, so a copy of the database
holds no usable link. Asking for a link answers the same whether or not the address has an
account, and the email goes out only after the response has left (``send_after_response``),
so neither the words nor the time taken tell an address with an account from one without.
Completing a reset changes the password and, through ``account.change_password``, ends every
session and forgets every remembered device. It never signs anyone in and never touches the
second factor: the next sign-in asks for it as before.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import Response, current_app
from sqlalchemy import delete, func, select, update

from models import PasswordResetToken, User, db
from models.types import utcnow
from services import account, audit, notify, policy, throttle
from services.client import client_ip, user_agent
from services.mail import DeliveryError, send
from services.users import by_email

# Emails per user per rolling hour: enough for a lost message or two, too few to flood a
# mailbox by asking on someone's behalf.
SENDS_PER_HOUR = 5
# token_urlsafe(32) is 43 characters; anything much longer is not one of ours.
MAX_TOKEN_LENGTH = 128


@dataclass(frozen=True)
class Outgoing:
    """An email to send once the response has gone.

    ``token_id`` names the reset link the email carries, removed again if it cannot be sent,
    so an undelivered link neither works nor counts against the hourly limit.
    """

    user_id: int
    subject: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    token_id: int | None = None


@dataclass(frozen=True)
class Link:
    """A reset link that still works, and whose password it resets."""

    token_id: int
    user: User


def valid_for() -> timedelta:
    return current_app.config["MFA_PASSWORD_RESET_VALID_FOR"]


def valid_minutes() -> int:
    return int(valid_for().total_seconds() // 60)


def _hash(token: str) -> bytes:
    # surrogatepass: a path segment with broken percent-encoding must hash, not raise.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def request_link(email: str, link_for: Callable[[str], str]) -> Outgoing | None:
    """Record a request for a reset link; the email to send, or None. Commits.

    Cases: unknown address, switched-off account or API user (audited, nothing sent);
    SENDS_PER_HOUR links already made in the last hour (audited, nothing sent); otherwise a new
    token that voids the user's earlier unused ones. The caller answers the same in every case.
    """
    user = by_email(email)
    if user is None or not user.active or not user.is_person:
        reason = "unknown_address" if user is None else "inactive" if user.is_person else "api_user"
        audit.record("password_reset.refused", subject=user, reason=reason)
        db.session.commit()
        return None

    now = utcnow()
    # Lock the user's row while counting, so racing requests cannot both squeeze under the limit.
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    sent_last_hour = db.session.scalar(
        select(func.count(PasswordResetToken.id)).where(
            PasswordResetToken.user_id == user.id,
            PasswordResetToken.created_at > now - timedelta(hours=1),
        )
    )
    if (sent_last_hour or 0) >= SENDS_PER_HOUR:
        audit.record("password_reset.throttled", subject=user)
        db.session.commit()
        return None

    # Only the newest link works: an older email lying in an inbox is worth nothing.
    db.session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user.id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    token = secrets.token_urlsafe(32)
    row = PasswordResetToken(
        user_id=user.id, token_hash=_hash(token), created_at=now, expires_at=now + valid_for()
    )
    db.session.add(row)
    audit.record("password_reset.requested", subject=user)
    db.session.commit()
    return Outgoing(
        user_id=user.id,
        subject="Reset your password",
        template="password_reset",
        # No "if this was not you, change your password" footer: here that is the wrong advice.
        context={"link": link_for(token), "minutes": valid_minutes(), "warning": False},
        token_id=row.id,
    )


def digest(token: str) -> bytes | None:
    """The SHA-256 a token is stored under, or None for anything that cannot be one of ours."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return _hash(token)


def usable(token: str) -> Link | None:
    """The link if it still works: known, unused, unexpired, and its account active."""
    token_hash = digest(token)
    return usable_by_digest(token_hash) if token_hash is not None else None


def usable_by_digest(token_hash: bytes) -> Link | None:
    """As ``usable``, for a link already traded for its digest (see ``reset_views``)."""
    found = db.session.execute(
        select(PasswordResetToken.id, User)
        .join(User, User.id == PasswordResetToken.user_id)
        .where(
            PasswordResetToken.token_hash == token_hash,
            PasswordResetToken.used_at.is_(None),
            PasswordResetToken.expires_at > utcnow(),
            User.active.is_(True),
        )
    ).first()
    return Link(token_id=found[0], user=found[1]) if found else None


def complete(link: Link, new_password: str) -> bool:
    """Spend the link and set the new password; False if the link was spent (or expired)
    by the time this ran. Commits.

    The caller has checked the password (``password_problem``), so a typo does not burn the
    link. The conditional UPDATE is the arbiter: of two racing requests only one changes the
    password.
    """
    now = utcnow()
    user = link.user
    spent = db.session.execute(
        update(PasswordResetToken)
        .where(
            PasswordResetToken.id == link.token_id,
            PasswordResetToken.used_at.is_(None),
            PasswordResetToken.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:
        db.session.rollback()
        return False
    # Any other link still out there (two racing requests can both make one) dies with it.
    db.session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user.id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    account.change_password(user, new_password)
    # A reset is how a locked-out address gets back in (see services.throttle).
    throttle.reset(throttle.email_key(user.email))
    audit.record("password_reset.completed", subject=user)
    db.session.commit()
    return True


def changed_notice(user: User, sign_in_url: str) -> Outgoing:
    return Outgoing(
        user_id=user.id,
        subject="Your password was changed",
        template="password_changed",
        context={"sign_in_url": sign_in_url},
    )


def send_after_response(response: Response, outgoing: Outgoing) -> None:
    """Send ``outgoing`` once ``response`` has been written to the client.

    A mail server takes tens of milliseconds at best and MAIL_TIMEOUT seconds at worst; doing
    that before answering would tell an attacker which addresses have accounts. The request's
    context is gone by then, so the delivery runs in a fresh app context and its audit rows
    carry the client's address explicitly.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    ip, agent = client_ip(), user_agent()
    # When and from where, read now: the email says it, and after the response it is gone.
    seen = notify.where_and_when()

    def deliver() -> None:
        with app.app_context():
            _deliver(outgoing, ip=ip, agent=agent, seen=seen)

    response.call_on_close(deliver)


def _deliver(outgoing: Outgoing, *, ip: str, agent: str, seen: dict[str, Any]) -> bool:
    user = db.session.get(User, outgoing.user_id)
    if user is None:
        return False
    try:
        send(
            user.email,
            outgoing.subject,
            outgoing.template,
            user=user,
            clinic=current_app.config["MFA_CLINIC_NAME"],
            support=policy.current().support_contact,
            **seen,
            **outgoing.context,
        )
    except DeliveryError as exc:
        if outgoing.token_id is not None:
            db.session.execute(
                delete(PasswordResetToken).where(PasswordResetToken.id == outgoing.token_id)
            )
        audit.record(
            "mail.failed",
            subject=user,
            ip=ip,
            agent=agent,
            template=outgoing.template,
            error=str(exc)[:200],
        )
        db.session.commit()
        return False
    return True
