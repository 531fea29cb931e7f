"""Email and SMS one-time codes (FAC-2 to FAC-4).

Six random digits, valid for the policy's minutes (5, at most 10), five wrong tries per code,
single use, a new code voids the old one, a resend only after 60 seconds, at most five sends an
hour per user and per number. Stored only as a keyed hash; the code itself exists in memory
just long enough to be delivered, and is never logged.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy import Update, case, delete, func, select, update

from models import OneTimeCode, User, db
from models.codes import PURPOSE_SIGN_IN
from models.types import utcnow
from services import audit, policy, wrong_codes
from services.crypto import keyed_hash
from services.mail import DeliveryError
from services.wording import plural

if TYPE_CHECKING:  # the kinds use this module to check codes; it only calls them
    from services.factor_kinds import CodeSendingKind

DIGITS = 6


@dataclass(frozen=True)
class Refused:
    """The limits do not allow a send now: wait ``retry_after`` seconds (HTTP 429)."""

    message: str
    retry_after: int
    status: int = 429


@dataclass(frozen=True)
class Failed:
    """The mail server or SMS gateway did not take the code; nothing was kept (HTTP 503).
    ``message`` says what failed; the caller adds the way forward that fits its page."""

    message: str
    status: int = 503


@dataclass(frozen=True)
class Sent:
    channel: str
    shown_as: str  # the masked address or number, for "We sent a code to ..."
    expires_in_minutes: int

    @property
    def message(self) -> str:
        return (
            f"We sent a code to {self.shown_as}. It expires in "
            f"{plural(self.expires_in_minutes, 'minute')}."
        )


SendResult = Sent | Refused | Failed


def _hash(user_id: int, purpose: str, target: str, code: str) -> bytes:
    return keyed_hash(f"otc:{user_id}:{purpose}:{target}:{code}")


def _active(user_id: int, purpose: str, target: str | None, session_id: int | None, now: datetime):
    """The WHERE clause of the one code that can still be used (to ``target``, if given)."""
    conditions = [
        OneTimeCode.user_id == user_id,
        OneTimeCode.purpose == purpose,
        OneTimeCode.used_at.is_(None),
        OneTimeCode.voided_at.is_(None),
        OneTimeCode.expires_at > now,
        OneTimeCode.wrong_tries < current_app.config["MFA_CODE_WRONG_TRIES"],
    ]
    if target is not None:
        conditions.append(OneTimeCode.target == target)
    if session_id is not None:
        conditions.append(OneTimeCode.session_id == session_id)
    return conditions


def has_active_code(user_id: int, purpose: str, session_id: int | None) -> bool:
    """Whether a code that can still be used is out there: the challenge asks for one only
    then, and otherwise says that nothing was sent."""
    conditions = _active(user_id, purpose, None, session_id, utcnow())
    return db.session.scalar(select(OneTimeCode.id).where(*conditions).limit(1)) is not None


def seconds_until_resend(user_id: int, purpose: str, session_id: int | None = None) -> int:
    """Seconds before another code may be sent for the same sign-in (or the same setup).

    A new sign-in gets its code at once; the hourly caps still bound how many go out.
    """
    last = db.session.scalar(
        select(func.max(OneTimeCode.created_at)).where(
            OneTimeCode.user_id == user_id,
            OneTimeCode.purpose == purpose,
            OneTimeCode.session_id == session_id
            if session_id is not None
            else OneTimeCode.session_id.is_(None),
        )
    )
    if last is None:
        return 0
    wait = last + current_app.config["MFA_CODE_RESEND_AFTER"] - utcnow()
    return max(0, int(wait.total_seconds() + 0.999))


def _check_limits(
    user: User, target: str, purpose: str, session_id: int | None, now: datetime
) -> Refused | None:
    cfg = current_app.config
    wait = seconds_until_resend(user.id, purpose, session_id)
    if wait:
        return Refused(
            f"Please wait {plural(wait, 'second')} before asking for another code.", wait
        )
    hour_ago = now - timedelta(hours=1)
    per_user = db.session.scalar(
        select(func.count(OneTimeCode.id)).where(
            OneTimeCode.user_id == user.id, OneTimeCode.created_at > hour_ago
        )
    )
    per_target = db.session.scalar(
        select(func.count(OneTimeCode.id)).where(
            OneTimeCode.target == target, OneTimeCode.created_at > hour_ago
        )
    )
    if max(per_user or 0, per_target or 0) >= cfg["MFA_CODE_SENDS_PER_HOUR"]:
        oldest = db.session.scalar(
            select(func.min(OneTimeCode.created_at)).where(
                (OneTimeCode.user_id == user.id) | (OneTimeCode.target == target),
                OneTimeCode.created_at > hour_ago,
            )
        )
        retry = int(((oldest or now) + timedelta(hours=1) - now).total_seconds()) + 1
        return Refused(
            "Too many codes were sent in the last hour. Use another way to sign in, or try "
            f"again in {plural(max(1, math.ceil(retry / 60)), 'minute')}.",
            retry,
        )
    return None


def send_code(
    user: User,
    *,
    kind: CodeSendingKind,
    target: str,
    purpose: str,
    session_id: int | None = None,
) -> SendResult:
    """Make, store and have ``kind`` deliver a new code: Sent, Refused (limits) or Failed.

    The user's row is locked while the limits are checked, so two racing requests cannot both
    squeeze under them. The row is committed before delivery (a slow mail server must not hold
    the lock) and deleted again if delivery fails, so a failure leaves nothing behind.
    """
    now = utcnow()
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    refused = _check_limits(user, target, purpose, session_id, now)
    if refused is not None:
        db.session.rollback()  # let go of the user's row
        return refused
    minutes = policy.current().code_valid_minutes
    code = f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"
    db.session.execute(
        update(OneTimeCode)
        .where(
            OneTimeCode.user_id == user.id,
            OneTimeCode.purpose == purpose,
            OneTimeCode.used_at.is_(None),
            OneTimeCode.voided_at.is_(None),
        )
        .values(voided_at=now)
    )
    row = OneTimeCode(
        user_id=user.id,
        session_id=session_id,
        purpose=purpose,
        channel=kind.name,
        target=target,
        code_hash=_hash(user.id, purpose, target, code),
        created_at=now,
        expires_at=now + timedelta(minutes=minutes),
    )
    db.session.add(row)
    db.session.commit()
    try:
        kind.deliver(user, target, purpose=purpose, code=code, minutes=minutes)
    except DeliveryError as exc:
        db.session.execute(delete(OneTimeCode).where(OneTimeCode.id == row.id))
        audit.record(
            "mfa.code_delivery_failed", subject=user, channel=kind.name, error=str(exc)[:200]
        )
        db.session.commit()
        return Failed(f"We could not send the {kind.noun} just now.")
    audit.record("mfa.code_sent", subject=user, channel=kind.name, purpose=purpose)
    db.session.commit()
    return Sent(channel=kind.name, shown_as=kind.shown_as(target) or "", expires_in_minutes=minutes)


def _judge(
    user_id: int, *, purpose: str, target: str, session_id: int | None, code: str | None
) -> Update:
    """Compare ``code`` with the current code and count the try, in one statement.

    The UPDATE matches only the current, unexpired, unused code with tries left, and the
    database compares the keyed hashes inside it: a right code is spent (``used_at``), a wrong
    or malformed one (None) uses up one of the code's five tries. Racing requests queue on the
    row, so at most five are ever compared and of many carrying the right code exactly one wins.
    """
    now = utcnow()
    # No code hashes to a value no stored code has: a malformed code is a wrong try.
    given = _hash(user_id, purpose, target, code) if code is not None else b""
    right = OneTimeCode.code_hash == given
    return (
        update(OneTimeCode)
        .where(*_active(user_id, purpose, target, session_id, now))
        .values(
            used_at=case((right, now), else_=None),
            wrong_tries=OneTimeCode.wrong_tries + case((right, 0), else_=1),
        )
        .returning(OneTimeCode.used_at)
        .execution_options(synchronize_session=False)
    )


def verify(user_id: int, *, purpose: str, target: str, code: str | None) -> bool:
    """Whether ``code`` is the current code of a setup (``_judge``); spent if it is."""
    spent = db.session.execute(
        _judge(user_id, purpose=purpose, target=target, session_id=None, code=code)
    ).first()
    return spent is not None and spent.used_at is not None


def spend_for_sign_in(
    user_id: int, *, target: str, session_id: int, code: str | None
) -> wrong_codes.Passed | None:
    """Spend ``code`` if it is the current code of the pending sign-in ``session_id``
    (``_judge``), behind the gate (services/wrong_codes.py): while the gate is shut the code
    is neither spent nor counted."""
    judged = _judge(
        user_id, purpose=PURPOSE_SIGN_IN, target=target, session_id=session_id, code=code
    )
    spent = wrong_codes.spend(wrong_codes.guarded(judged, OneTimeCode.user_id))
    # A wrong code matches too (its try is counted on the code): only a spent one passes.
    return None if spent is None or spent.used_at is None else wrong_codes.passed(spent)
