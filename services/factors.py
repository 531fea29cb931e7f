"""Enrolled factors: checking a TOTP code against one, once and only once (FAC-1)."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import delete, exists, or_, select, update

from models import MfaFactor, MfaSetup, RecoveryCode, RememberedDevice, User, db
from models.types import utcnow
from services import crypto, totp


def consume_totp(factor: MfaFactor, code: str | None) -> bool:
    """True if ``code`` is a current code of ``factor`` not used before, and spend it.

    The UPDATE is the arbiter: it matches only while the step is newer than the last one
    accepted and the user's second factor is not locked, so of N racing requests carrying
    the same code exactly one succeeds, and none succeeds once a lock has landed.
    """
    if code is None or factor.secret_encrypted is None:
        return False
    secret = crypto.decrypt(factor.secret_encrypted)
    step = totp.matching_step(secret, code, after_step=factor.last_step)
    if step is None:
        return False
    now = utcnow()
    locked = exists().where(
        User.id == MfaFactor.user_id,
        or_(
            User.mfa_failed_attempts >= current_app.config["MFA_WRONG_CODES_HARD_LOCK"],
            User.mfa_locked_until > now,
        ),
    )
    result = db.session.execute(
        update(MfaFactor)
        .where(MfaFactor.id == factor.id, MfaFactor.last_step < step, ~locked)
        .values(last_step=step, last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def for_user(user_id: int) -> list[MfaFactor]:
    return list(
        db.session.scalars(
            select(MfaFactor).where(MfaFactor.user_id == user_id).order_by(MfaFactor.id)
        )
    )


def reset_all(user_id: int) -> None:
    """Remove every factor, setup in progress, recovery code and remembered device."""
    for model in (MfaFactor, MfaSetup, RecoveryCode, RememberedDevice):
        db.session.execute(delete(model).where(model.user_id == user_id))
    db.session.execute(
        update(User)
        .where(User.id == user_id)
        .values(mfa_failed_attempts=0, mfa_lockouts=0, mfa_locked_until=None)
    )
