"""The setup wizard's rules (WIZ): which stage a setup is at and how it moves.

The stage lives in the ``mfa_setups`` row, so a client cannot skip a step by editing a form
or a URL; each move is a conditional UPDATE on the stage it expects. What comes next after a
stage is decided here, not in the views.

One factor per kind (a unique (user, kind) rule in the database): setting up a kind the user
already has replaces the old factor only once the new one is proved, so a person moving the
authenticator to a new phone keeps signing in with the old one until the new one works.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from models import MfaFactor, MfaSetup, User, db
from services import crypto, factor_kinds, recovery

SCAN = "scan"  # secret made, waiting for a code that proves the app has it
CONFIRM = "confirm"  # email/SMS: the address or number to confirm
CODE = "code"  # email/SMS: a code was sent, waiting for it to come back
RECOVERY = "recovery"  # factor enrolled, recovery codes to show
REMEMBER = "remember"  # offer to remember this device
DONE = "done"
BEFORE_PROOF = (SCAN, CONFIRM, CODE)


@dataclass(frozen=True)
class Enrolled:
    """A proved factor: ``replaced`` when it took the place of one of the same kind (whose
    address or number was ``old_target``); ``profile_number`` when the proved mobile number
    also became the profile's."""

    kind: factor_kinds.FactorKind
    replaced: bool
    profile_number: str | None = None
    target: str | None = None
    old_target: str | None = None

    @property
    def target_changed(self) -> bool:
        """Codes now go to another address or number than before (the old one is told)."""
        return self.replaced and self.old_target is not None and self.old_target != self.target


def current(user_id: int) -> MfaSetup | None:
    return db.session.scalar(select(MfaSetup).where(MfaSetup.user_id == user_id))


def begin(user: User, kind_name: str, *, adding: bool = False) -> MfaSetup:
    """Start (or start again): a new secret replaces any setup in progress; the user's
    enrolled factors are untouched until the new one is proved. ``adding``: a signed-in
    person adds or replaces a factor (the wizard ends on their security page)."""
    kind = factor_kinds.get(kind_name)
    setup = current(user.id)
    if setup is None:
        setup = MfaSetup(user_id=user.id)
        db.session.add(setup)
    setup.kind = kind.name
    setup.stage = kind.first_stage
    setup.secret_encrypted = None
    setup.target = None
    setup.target_to_profile = False
    setup.recovery_codes_encrypted = None
    setup.adding = adding
    kind.start_setup(setup)
    return setup


def hold_new_recovery_codes(user: User) -> list[str]:
    """A fresh set of recovery codes replaces the old ones at once (FAC-5); their only
    plaintext copy waits, encrypted, in a setup row until the person has saved them, as the
    wizard's recovery step keeps the first set. Replaces any setup in progress."""
    codes = recovery.generate(user.id)
    setup = begin(user, factor_kinds.RECOVERY.name, adding=True)
    setup.recovery_codes_encrypted = crypto.encrypt("\n".join(codes))
    return codes


def code_sent(setup: MfaSetup, target: str, *, to_profile: bool = False) -> None:
    """The address or number is chosen and a code is on its way to it. ``to_profile``: the
    person asked for this number to become their profile's once proved."""
    setup.target = target
    setup.target_to_profile = to_profile
    setup.stage = CODE


def secret_of(setup: MfaSetup) -> str:
    assert setup.secret_encrypted is not None
    return crypto.decrypt(setup.secret_encrypted)


def after_proof(*, codes_shown: bool, remember_offered: bool) -> str:
    if codes_shown:
        return RECOVERY
    return REMEMBER if remember_offered else DONE


def after_recovery(*, remember_offered: bool) -> str:
    return REMEMBER if remember_offered else DONE


def confirm(
    setup: MfaSetup, user: User, code: str | None, *, remember_offered: bool
) -> Enrolled | None:
    """Enrol the setup's factor if ``code`` proves it. None: not proved (a wrong email or SMS
    code has used up one of that code's tries, which the caller commits), or a racing request
    enrolled it first."""
    kind = factor_kinds.get(setup.kind)
    if setup.stage not in BEFORE_PROOF:
        return None
    last_step = kind.check_setup(setup, user, code)
    if last_step is None:
        return None
    return _enrol(setup, user, kind, remember_offered=remember_offered, last_step=last_step)


def _enrol(
    setup: MfaSetup,
    user: User,
    kind: factor_kinds.FactorKind,
    *,
    remember_offered: bool,
    last_step: int,
) -> Enrolled | None:
    first_codes = recovery.remaining(user.id) == 0
    codes_shown = recovery.new_codes() if first_codes else []
    moved = db.session.execute(
        update(MfaSetup)
        .where(
            MfaSetup.user_id == user.id,
            MfaSetup.stage == setup.stage,
            MfaSetup.kind == setup.kind,
            # Exactly what was proved: not a secret or number a restart replaced meanwhile.
            MfaSetup.secret_encrypted == setup.secret_encrypted
            if setup.secret_encrypted
            else MfaSetup.target == setup.target,
        )
        .values(
            stage=after_proof(codes_shown=bool(codes_shown), remember_offered=remember_offered),
            secret_encrypted=None,
            recovery_codes_encrypted=crypto.encrypt("\n".join(codes_shown))
            if codes_shown
            else None,
        )
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # a racing request enrolled it first
        return None
    if codes_shown:
        recovery.store(user.id, codes_shown)
    existing = db.session.scalar(
        select(MfaFactor).where(MfaFactor.user_id == user.id, MfaFactor.kind == kind.name)
    )
    old_target = existing.target if existing is not None else None
    if existing is not None:
        # Proved now, so the old one stops working now (seed 002, done better).
        existing.secret_encrypted = setup.secret_encrypted
        existing.target = setup.target
        existing.last_step = last_step  # the code just used cannot sign anyone in
        existing.last_used_at = None
    else:
        has_default = db.session.scalar(
            select(MfaFactor.id).where(MfaFactor.user_id == user.id, MfaFactor.is_default.is_(True))
        )
        db.session.add(
            MfaFactor(
                user_id=user.id,
                kind=kind.name,
                is_default=has_default is None,
                secret_encrypted=setup.secret_encrypted,
                target=setup.target,
                last_step=last_step,
            )
        )
    profile_number = None
    if setup.target_to_profile and setup.target and user.mobile_number != setup.target:
        # Only when the person asked for it, and now that the number is proved.
        user.mobile_number = profile_number = setup.target
    db.session.flush()
    db.session.refresh(setup)
    return Enrolled(
        kind=kind,
        replaced=existing is not None,
        profile_number=profile_number,
        target=setup.target,
        old_target=old_target,
    )


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
