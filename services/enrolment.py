"""The setup wizard's rules (WIZ): which stage a setup is at and how it moves.

The stage lives in the ``mfa_setups`` row, so a client cannot skip a step by editing a form
or a URL; each move is a conditional UPDATE on the stage it expects.
"""

from __future__ import annotations

from sqlalchemy import select, update

from models import MfaFactor, MfaSetup, User, db
from models.factors import TOTP
from services import crypto, recovery, totp

SCAN = "scan"  # secret made, waiting for a code that proves the app has it
RECOVERY = "recovery"  # factor enrolled, recovery codes to show
REMEMBER = "remember"  # offer to remember this device
DONE = "done"


def current(user_id: int) -> MfaSetup | None:
    return db.session.scalar(select(MfaSetup).where(MfaSetup.user_id == user_id))


def begin(user: User, kind: str) -> MfaSetup:
    """Start (or start again): a new secret replaces any setup in progress."""
    setup = current(user.id)
    if setup is None:
        setup = MfaSetup(user_id=user.id)
        db.session.add(setup)
    setup.kind = kind
    setup.stage = SCAN
    setup.secret_encrypted = crypto.encrypt(totp.new_secret()) if kind == TOTP else None
    setup.recovery_codes_encrypted = None
    return setup


def secret_of(setup: MfaSetup) -> str:
    assert setup.secret_encrypted is not None
    return crypto.decrypt(setup.secret_encrypted)


def confirm_totp(setup: MfaSetup, user: User, code: str | None, *, remember_offered: bool) -> bool:
    """Enrol the app if ``code`` proves it has the secret. A wrong code changes nothing."""
    if code is None or setup.stage != SCAN or setup.secret_encrypted is None:
        return False
    step = totp.matching_step(secret_of(setup), code, after_step=0)
    if step is None:
        return False
    first_codes = recovery.remaining(user.id) == 0
    codes = recovery.generate(user.id) if first_codes else []
    next_stage = RECOVERY if codes else (REMEMBER if remember_offered else DONE)
    moved = db.session.execute(
        update(MfaSetup)
        .where(
            MfaSetup.user_id == user.id,
            MfaSetup.stage == SCAN,
            MfaSetup.secret_encrypted == setup.secret_encrypted,
        )
        .values(
            stage=next_stage,
            secret_encrypted=None,
            recovery_codes_encrypted=crypto.encrypt("\n".join(codes)) if codes else None,
        )
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # a racing request enrolled it first
        return False
    has_default = db.session.scalar(
        select(MfaFactor.id).where(MfaFactor.user_id == user.id, MfaFactor.is_default.is_(True))
    )
    db.session.add(
        MfaFactor(
            user_id=user.id,
            kind=TOTP,
            is_default=has_default is None,
            secret_encrypted=setup.secret_encrypted,
            last_step=step,  # the code just used cannot sign anyone in
        )
    )
    db.session.refresh(setup)
    return True


def recovery_codes(setup: MfaSetup) -> list[str]:
    if not setup.recovery_codes_encrypted:
        return []
    return crypto.decrypt(setup.recovery_codes_encrypted).split("\n")


def move(setup: MfaSetup, *, from_stage: str, to_stage: str) -> bool:
    moved = db.session.execute(
        update(MfaSetup)
        .where(MfaSetup.user_id == setup.user_id, MfaSetup.stage == from_stage)
        .values(stage=to_stage)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount == 1:
        setup.stage = to_stage
        return True
    return False


def finish(setup: MfaSetup) -> None:
    """Forget the setup, and with it the only plaintext copy of the recovery codes."""
    db.session.delete(setup)
