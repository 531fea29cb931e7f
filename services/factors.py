"""Enrolled factors: checking a TOTP code against one, once and only once (FAC-1)."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import bindparam, delete, exists, or_, select, update

from models import MfaFactor, MfaSetup, RecoveryCode, RememberedDevice, User, db
from models.types import utcnow
from services import crypto, totp

# Built once with bind parameters: this runs on every code a person types (PERF-2).
_FACTORS, _USERS = MfaFactor.__table__.c, User.__table__.c
_CONSUME = (
    update(MfaFactor.__table__)
    .where(
        _FACTORS.id == bindparam("p_id"),
        _FACTORS.last_step < bindparam("p_step"),
        ~exists().where(
            _USERS.id == _FACTORS.user_id,
            or_(
                _USERS.mfa_failed_attempts >= bindparam("p_hard"),
                _USERS.mfa_locked_until > bindparam("p_now"),
            ),
        ),
    )
    .values(last_step=bindparam("p_step"), last_used_at=bindparam("p_now"))
)


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
    result = db.session.execute(
        _CONSUME,
        {
            "p_id": factor.id,
            "p_step": step,
            "p_now": utcnow(),
            "p_hard": current_app.config["MFA_WRONG_CODES_HARD_LOCK"],
        },
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
