"""Single-use emailed links that let their holder choose a password: "Forgot password?"
(AUTH-7, 30 minutes) and an invitation to new staff (72 hours). One machinery, two purposes.

The link carries a 256-bit random token; only its SHA-256 is stored, so a copy of the database
holds no usable link. A new link voids the older unused ones of its purpose (an older email
lying in an inbox is worth nothing), and a link opens only its own purpose's page. Choosing
the password spends the link with a conditional UPDATE, so of two racing requests one wins,
and voids every other link of that person. A link the mail server would not take is deleted:
it neither works nor counts against the hourly limit. Nothing here signs anyone in.
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
from models.codes import LINK_INVITATION, LINK_PASSWORD_RESET
from models.types import utcnow
from services import audit, notify, policy
from services.client import client_ip, user_agent
from services.mail import DeliveryError, send

# token_urlsafe(32) is 43 characters; anything much longer is not one of ours.
MAX_TOKEN_LENGTH = 128


@dataclass(frozen=True)
class Purpose:
    name: str  # PasswordResetToken.purpose
    valid_for_setting: str  # the config key of its lifetime

    def valid_for(self) -> timedelta:
        return current_app.config[self.valid_for_setting]


PASSWORD_RESET = Purpose(LINK_PASSWORD_RESET, "MFA_PASSWORD_RESET_VALID_FOR")
INVITATION = Purpose(LINK_INVITATION, "MFA_INVITATION_VALID_FOR")


@dataclass(frozen=True)
class Outgoing:
    """An email to send. ``token_id`` names the link the email carries, removed again if it
    cannot be sent."""

    user_id: int
    subject: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    token_id: int | None = None


@dataclass(frozen=True)
class Link:
    """A link that still works, and whose password it sets."""

    token_id: int
    user: User


def _hash(token: str) -> bytes:
    # surrogatepass: a path segment with broken percent-encoding must hash, not raise.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def digest(token: str) -> bytes | None:
    """The SHA-256 a token is stored under, or None for anything that cannot be one of ours."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return _hash(token)


def made_last_hour(user: User, purpose: Purpose) -> int:
    """Links of ``purpose`` made for ``user`` in the last hour, with the user's row locked so
    that racing requests cannot both squeeze under a limit."""
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    return (
        db.session.scalar(
            select(func.count(PasswordResetToken.id)).where(
                PasswordResetToken.user_id == user.id,
                PasswordResetToken.purpose == purpose.name,
                PasswordResetToken.created_at > utcnow() - timedelta(hours=1),
            )
        )
        or 0
    )


def issue(
    user: User,
    purpose: Purpose,
    link_for: Callable[[str], str],
    *,
    subject: str,
    template: str,
    **context: Any,
) -> Outgoing:
    """A new link of ``purpose`` for ``user`` that voids their older unused ones of it; the
    email that carries it (``link_for(token)`` is its URL). The caller commits."""
    now = utcnow()
    db.session.execute(
        update(PasswordResetToken)
        .where(
            PasswordResetToken.user_id == user.id,
            PasswordResetToken.purpose == purpose.name,
            PasswordResetToken.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    token = secrets.token_urlsafe(32)
    row = PasswordResetToken(
        user_id=user.id,
        purpose=purpose.name,
        token_hash=_hash(token),
        created_at=now,
        expires_at=now + purpose.valid_for(),
    )
    db.session.add(row)
    db.session.flush()
    return Outgoing(
        user_id=user.id,
        subject=subject,
        template=template,
        context={"link": link_for(token), **context},
        token_id=row.id,
    )


def usable(token: str, purpose: Purpose) -> Link | None:
    """The link if it still works: known, of this purpose, unused, unexpired, account active."""
    token_hash = digest(token)
    return usable_by_digest(token_hash, purpose) if token_hash is not None else None


def usable_by_digest(token_hash: bytes, purpose: Purpose) -> Link | None:
    """As ``usable``, for a link already traded for its digest (see ``reset_views``)."""
    found = db.session.execute(
        select(PasswordResetToken.id, User)
        .join(User, User.id == PasswordResetToken.user_id)
        .where(
            PasswordResetToken.token_hash == token_hash,
            PasswordResetToken.purpose == purpose.name,
            PasswordResetToken.used_at.is_(None),
            PasswordResetToken.expires_at > utcnow(),
            User.active.is_(True),
        )
    ).first()
    return Link(token_id=found[0], user=found[1]) if found else None


def open_link(user: User, purpose: Purpose) -> PasswordResetToken | None:
    """The newest unused, unexpired link of ``purpose`` for ``user`` (an open invitation)."""
    return db.session.scalar(
        select(PasswordResetToken)
        .where(
            PasswordResetToken.user_id == user.id,
            PasswordResetToken.purpose == purpose.name,
            PasswordResetToken.used_at.is_(None),
            PasswordResetToken.expires_at > utcnow(),
        )
        .order_by(PasswordResetToken.id.desc())
        .limit(1)
    )


def spend(link: Link) -> bool:
    """Use the link up; False if it was spent (or expired) by the time this ran. The caller
    sets the password in the same transaction and commits.

    The conditional UPDATE is the arbiter: of two racing requests only one matches. Every
    other link of the person, of any purpose, dies with it: the password is chosen now.
    """
    now = utcnow()
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
        return False
    void_all(link.user.id)
    return True


def void_all(user_id: int) -> None:
    """Every unused link of the person stops working (their password is chosen, or their
    account switched off)."""
    db.session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def send_now(outgoing: Outgoing) -> bool:
    """Send ``outgoing`` during the request (an admin's action: they are told if it failed).
    False: the mail server refused or was down; the link is gone and the failure audited."""
    return _deliver(outgoing, ip=client_ip(), agent=user_agent(), seen=notify.where_and_when())


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
            # The email's own words win: an invitation says no "when, from where".
            **{**seen, **outgoing.context},
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
