"""The setup wizard's rules (WIZ): which stage a setup is at and how it moves.

The stage lives in the ``mfa_setups`` row, so a client cannot skip a step by editing a form
or a URL; each move is a conditional UPDATE on the stage it expects.
"""

from __future__ import annotations

from sqlalchemy import select, update

from models import MfaFactor, MfaSetup, User, db
from models.codes import PURPOSE_SETUP
from models.factors import SMS, TOTP
from services import codes, crypto, recovery, totp

SCAN = "scan"  # secret made, waiting for a code that proves the app has it
CONFIRM = "confirm"  # email/SMS: the address or number to confirm
CODE = "code"  # email/SMS: a code was sent, waiting for it to come back
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
    setup.stage = SCAN if kind == TOTP else CONFIRM
    setup.secret_encrypted = crypto.encrypt(totp.new_secret()) if kind == TOTP else None
    setup.target = None
    setup.recovery_codes_encrypted = None
    return setup


def code_sent(setup: MfaSetup, target: str) -> None:
    """The address or number is chosen and a code is on its way to it."""
    setup.target = target
    setup.stage = CODE


def secret_of(setup: MfaSetup) -> str:
    assert setup.secret_encrypted is not None
    return crypto.decrypt(setup.secret_encrypted)


def confirm_totp(setup: MfaSetup, user: User, code: str | None, *, remember_offered: bool) -> bool:
    """Enrol the app if ``code`` proves it has the secret. False changed nothing."""
    if code is None or setup.stage != SCAN or setup.secret_encrypted is None:
        return False
    step = totp.matching_step(secret_of(setup), code, after_step=0)
    if step is None:
        return False
    return _enrol(setup, user, remember_offered=remember_offered, from_stage=SCAN, last_step=step)


def confirm_code(setup: MfaSetup, user: User, code: str | None, *, remember_offered: bool) -> bool:
    """Enrol email or SMS if ``code`` is the one just sent to the address or number. False
    changed nothing but the code's count of wrong tries."""
    if setup.stage != CODE or setup.target is None:
        return False
    # verify counts a wrong try itself; the caller commits that count.
    if not codes.verify(
        user.id, purpose=PURPOSE_SETUP, target=setup.target, session_id=None, code=code
    ):
        return False
    if setup.kind == SMS and user.mobile_number != setup.target:
        user.mobile_number = setup.target  # the number is proven now, so it joins the profile
    return _enrol(setup, user, remember_offered=remember_offered, from_stage=CODE)


def _enrol(
    setup: MfaSetup, user: User, *, remember_offered: bool, from_stage: str, last_step: int = 0
) -> bool:
    first_codes = recovery.remaining(user.id) == 0
    codes_shown = recovery.new_codes() if first_codes else []
    next_stage = RECOVERY if codes_shown else (REMEMBER if remember_offered else DONE)
    moved = db.session.execute(
        update(MfaSetup)
        .where(
            MfaSetup.user_id == user.id,
            MfaSetup.stage == from_stage,
            MfaSetup.kind == setup.kind,
            # Exactly what was proved: not a secret or number a restart replaced meanwhile.
            MfaSetup.secret_encrypted == setup.secret_encrypted
            if setup.secret_encrypted
            else MfaSetup.target == setup.target,
        )
        .values(
            stage=next_stage,
            secret_encrypted=None,
            recovery_codes_encrypted=crypto.encrypt("\n".join(codes_shown))
            if codes_shown
            else None,
        )
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # a racing request enrolled it first
        return False
    if codes_shown:
        recovery.store(user.id, codes_shown)
    has_default = db.session.scalar(
        select(MfaFactor.id).where(MfaFactor.user_id == user.id, MfaFactor.is_default.is_(True))
    )
    db.session.add(
        MfaFactor(
            user_id=user.id,
            kind=setup.kind,
            is_default=has_default is None,
            secret_encrypted=setup.secret_encrypted,
            target=setup.target,
            last_step=last_step,  # the code just used cannot sign anyone in
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
