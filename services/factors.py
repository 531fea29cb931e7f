"""A user's enrolled factors as rows: listing them, removing them all. How each kind checks
a code lives in services/factor_kinds."""

from __future__ import annotations

from sqlalchemy import bindparam, delete, select, update

from models import (
    MfaFactor,
    MfaSetup,
    RecoveryCode,
    RememberedDevice,
    TrustedLocation,
    User,
    db,
)

# Built once: every challenge and password step lists the person's factors (PERF-2).
_FOR_USER = select(MfaFactor).where(MfaFactor.user_id == bindparam("p_user")).order_by(MfaFactor.id)


def for_user(user_id: int) -> list[MfaFactor]:
    return list(db.session.scalars(_FOR_USER, {"p_user": user_id}))


def own(user_id: int, factor_id: int) -> MfaFactor | None:
    """The factor ``factor_id`` only if it is ``user_id``'s: an id from a URL names nothing
    of anyone else's."""
    return db.session.scalar(
        select(MfaFactor).where(MfaFactor.id == factor_id, MfaFactor.user_id == user_id)
    )


def of_kind(user_id: int, kind: str) -> MfaFactor | None:
    """The user's factor of ``kind`` (one per kind), the one a setup of that kind replaces."""
    return db.session.scalar(
        select(MfaFactor).where(MfaFactor.user_id == user_id, MfaFactor.kind == kind)
    )


def reset_all(user_id: int) -> None:
    """Remove every factor, setup in progress, recovery code, remembered device and trusted
    address."""
    for model in (MfaFactor, MfaSetup, RecoveryCode, RememberedDevice, TrustedLocation):
        db.session.execute(delete(model).where(model.user_id == user_id))
    db.session.execute(
        update(User)
        .where(User.id == user_id)
        .values(mfa_failed_attempts=0, mfa_lockouts=0, mfa_locked_until=None)
    )
