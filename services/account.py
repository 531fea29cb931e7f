"""A person's own account (ACC-1, ACC-2, AUTH-6, DEV-2): what their security page shows, and
each change to their credentials with the revocations it implies; and lifting the locks that
failed attempts put on them (OPS-4).

The rules live here, the security page's views only call them. Every change joins the
caller's transaction: the caller audits, commits, then emails (services/notify.py), so no
lock is held while a mail server answers. Whatever is named by an id from a URL is looked up
together with its owner, so someone else's id finds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select, update

from models import ClinicPolicy, MfaFactor, MfaSetup, SignInThrottle, User, UserSession, db
from models.policy import MODE_REQUIRED
from services import (
    devices,
    enrolment,
    factor_kinds,
    factors,
    locations,
    policy,
    recovery,
    requirement,
    sessions,
    throttle,
    wrong_codes,
)
from services.passwords import hash_password, password_problem
from services.requirement import Requirement
from services.users import UserInputError, by_email

# At this many recovery codes or fewer the page warns (recovery_code_used.txt says the same).
FEW_RECOVERY_CODES = 3

ONLY_WAY_REQUIRED = (
    "This is your only way to get a sign-in code, and your clinic requires two-step sign-in "
    "for you. Add another way first, then remove this one."
)
NOT_ALLOWED = "Your clinic no longer allows {label}. Choose another way, or remove this one."
NOTHING_TO_RECOVER = "Set up two-step sign-in first: recovery codes come with it."
GONE = "That way of getting a code was removed meanwhile, perhaps in another tab."


class Refused(ValueError):
    """A change the rules do not allow for this person; the message says why and what to do."""


@dataclass(frozen=True)
class Removal:
    """What removing a factor would do: ``refused`` says why it may not be removed;
    ``turns_off`` when no usable way would be left (two-step sign-in off for them)."""

    refused: str | None
    turns_off: bool


@dataclass(frozen=True)
class FactorLine:
    factor: MfaFactor
    kind: factor_kinds.FactorKind
    shown_as: str | None  # where codes go, masked; None for the app
    usable: bool  # the policy allows this kind for this person now
    removal: Removal


@dataclass(frozen=True)
class SessionLine:
    session: UserSession
    browser: str  # "Chrome on Windows"
    this_one: bool


@dataclass(frozen=True)
class Overview:
    """Everything the security page shows (ACC-1)."""

    needs: Requirement
    factors: list[FactorLine]
    addable: list[factor_kinds.FactorKind]  # allowed kinds the person has none of
    recovery_left: int
    devices: list[devices.Listed]
    sessions: list[SessionLine]

    @property
    def has_factor(self) -> bool:
        return bool(self.factors)

    @property
    def asked_for(self) -> FactorLine | None:
        """The way asked for first at sign-in (as ``signin.decide`` picks it); None when no
        code is asked for."""
        usable = [line for line in self.factors if line.usable]
        return min(usable, key=lambda u: (not u.factor.is_default, u.factor.id), default=None)

    @property
    def few_recovery_codes(self) -> bool:
        return self.recovery_left <= FEW_RECOVERY_CODES


def _strength(kind_name: str) -> int:
    """The registry's order, strongest first."""
    names = [kind.name for kind in factor_kinds.enrollable()]
    return names.index(kind_name) if kind_name in names else len(names)


def removal_of(factor: MfaFactor, needs: Requirement, mine: list[MfaFactor]) -> Removal:
    """Whether ``factor`` may go. A factor the policy no longer allows may always go (it
    protects nothing now); the last usable one only where two-step sign-in is not required
    for this person: not by the clinic, their role (even from a later date) or an override."""
    if factor.kind not in needs.methods:
        return Removal(refused=None, turns_off=False)
    others = [f for f in mine if f.id != factor.id and f.kind in needs.methods]
    if others:
        return Removal(refused=None, turns_off=False)
    if needs.level == MODE_REQUIRED:
        return Removal(refused=ONLY_WAY_REQUIRED, turns_off=True)
    return Removal(refused=None, turns_off=True)


def overview(user: User, this_session: UserSession, clinic: ClinicPolicy) -> Overview:
    needs = requirement.of(user, clinic)
    mine = sorted(factors.for_user(user.id), key=lambda f: (_strength(f.kind), f.id))
    lines = []
    for factor in mine:
        kind = factor_kinds.get(factor.kind)
        lines.append(
            FactorLine(
                factor=factor,
                kind=kind,
                shown_as=kind.shown_as(factor.target),
                usable=factor.kind in needs.methods,
                removal=removal_of(factor, needs, mine),
            )
        )
    had = {factor.kind for factor in mine}
    return Overview(
        needs=needs,
        factors=lines,
        addable=[
            kind
            for kind in factor_kinds.enrollable()
            if kind.name in needs.methods and kind.name not in had
        ],
        recovery_left=recovery.remaining(user.id),
        devices=devices.listed_for(user.id, policy.remember_days_for(user, clinic)),
        # This browser first, then the others, most recently active first.
        sessions=sorted(
            (
                SessionLine(row, devices.label_for(row.user_agent), row.id == this_session.id)
                for row in sessions.signed_in_for(user.id)
            ),
            key=lambda line: not line.this_one,
        ),
    )


def _lock(user: User) -> None:
    """PostgreSQL: lock the person's row, so changes to their factors racing in two tabs
    take turns and each sees what the other left. SQLite runs one write at a time; there the
    conditional statements below decide."""
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())


def set_default(user: User, factor: MfaFactor, needs: Requirement) -> None:
    """Make ``factor`` the one asked for first at sign-in; only a kind the policy allows."""
    if factor.kind not in needs.methods:
        raise Refused(NOT_ALLOWED.format(label=factor_kinds.get(factor.kind).label))
    _lock(user)
    # Statements, not attribute changes: a factor removed meanwhile is a refusal, not a
    # failed flush.
    chosen = db.session.execute(
        update(MfaFactor)
        .where(MfaFactor.id == factor.id, MfaFactor.user_id == user.id)
        .values(is_default=True)
    )
    if chosen.rowcount != 1:
        raise Refused(GONE)
    db.session.execute(
        update(MfaFactor)
        .where(MfaFactor.user_id == user.id, MfaFactor.id != factor.id)
        .values(is_default=False)
    )


@dataclass(frozen=True)
class Removed:
    kind: factor_kinds.FactorKind
    # The way asked for first from now on; None when two-step sign-in is now off for them.
    now_default: factor_kinds.FactorKind | None
    devices_forgotten: int


def remove_factor(user: User, factor: MfaFactor, needs: Requirement) -> Removed:
    """Remove one factor (ACC-2): refused (``Refused``) while it is the last usable one and
    the policy requires one. Remembered devices and trusted addresses are forgotten (DEV-2),
    a default moves to the strongest usable factor left, and with no factor left the
    recovery codes go too."""
    _lock(user)
    mine = factors.for_user(user.id)
    removal = removal_of(factor, needs, mine)
    if removal.refused:
        raise Refused(removal.refused)
    stmt = delete(MfaFactor).where(MfaFactor.id == factor.id, MfaFactor.user_id == user.id)
    guarded = needs.level == MODE_REQUIRED and factor.kind in needs.methods
    if guarded:
        another_usable = (
            select(func.count(MfaFactor.id))
            .where(
                MfaFactor.user_id == user.id,
                MfaFactor.id != factor.id,
                MfaFactor.kind.in_(needs.methods),
            )
            .scalar_subquery()
        )
        stmt = stmt.where(another_usable > 0)
    if db.session.execute(stmt.execution_options(synchronize_session=False)).rowcount != 1:
        # Another request removed this one, or (guarded) the other usable one, meanwhile.
        raise Refused(ONLY_WAY_REQUIRED if guarded else GONE)
    db.session.expunge(factor)
    left = sorted(
        (f for f in mine if f.id != factor.id),
        key=lambda f: (f.kind not in needs.methods, _strength(f.kind), f.id),
    )
    if factor.is_default and left:
        db.session.execute(
            update(MfaFactor).where(MfaFactor.id == left[0].id).values(is_default=True)
        )
    if not left:
        recovery.discard_all(user.id)
    forgotten = devices.revoke_all(user.id)
    locations.forget_all(user.id)
    default = next((f for f in left if f.is_default), None)
    return Removed(
        kind=factor_kinds.get(factor.kind),
        now_default=factor_kinds.get(default.kind)
        if default is not None and default.kind in needs.methods
        else None,
        devices_forgotten=forgotten,
    )


def start_replacing(user: User, factor: MfaFactor, needs: Requirement) -> MfaSetup:
    """Begin a setup of ``factor``'s kind that replaces it once proved (a new phone, a new
    address or number): the old one works until then (services/enrolment.py)."""
    if factor.kind not in needs.methods:
        raise Refused(NOT_ALLOWED.format(label=factor_kinds.get(factor.kind).label))
    return enrolment.begin(user, factor.kind, adding=True)


def replace_recovery_codes(user: User) -> list[str]:
    """New recovery codes; the old ones stop working at once (FAC-5)."""
    if not factors.for_user(user.id):
        raise Refused(NOTHING_TO_RECOVER)
    return enrolment.hold_new_recovery_codes(user)


def end_other_sessions(user: User, *, keep: UserSession) -> tuple[int, int]:
    """ "Sign out other devices" (AUTH-6): every other session ends, remembered devices are
    forgotten (DEV-2) and trusted addresses too (DEV-3), so a computer left signed in at the
    front desk needs the password and the code again. Returns (sessions, devices)."""
    ended = sessions.end_all_for(user.id, reason="signed_out_by_user", keep=keep)
    forgotten = devices.revoke_all(user.id)
    locations.forget_all(user.id)
    return ended, forgotten


def change_password(user: User, new_password: str, *, keep: UserSession | None = None) -> None:
    """Set a new password; every other session and every remembered device stops working."""
    if not user.is_person:
        raise UserInputError("API users have no password: they read the API with tokens.")
    problem = password_problem(new_password)
    if problem:
        raise UserInputError(problem)
    user.password_hash = hash_password(new_password)
    devices.revoke_all(user.id)
    locations.forget_all(user.id)
    sessions.end_all_for(user.id, reason="password_changed", keep=keep)


def reset_mfa(user: User) -> None:
    """Remove every factor, recovery code and remembered device; end every session."""
    factors.reset_all(user.id)
    sessions.end_all_for(user.id, reason="mfa_reset")


def forget_devices(user: User) -> tuple[int, int]:
    """Forget every remembered device and end the sessions, which a lost or stolen device may
    hold; (devices forgotten, sessions ended)."""
    forgotten = devices.revoke_all(user.id)
    return forgotten, sessions.end_all_for(user.id, reason="devices_forgotten")


def sign_out_everywhere(user: User) -> int:
    """End every session and forget every trusted address; how many sessions ended."""
    locations.forget_all(user.id)
    return sessions.end_all_for(user.id, reason="signed_out_everywhere")


@dataclass(frozen=True)
class Unlocked:
    password: bool  # the address's password throttling was lifted
    second_factor: bool  # a second-factor lock was lifted


def unlock(email: str) -> Unlocked:
    """Lift the password throttling of ``email`` (known or not: the count is per address)
    and any lock on its user's second factor. `flask users unlock` and the admin's page."""
    password = (
        db.session.execute(
            delete(SignInThrottle).where(SignInThrottle.key == throttle.email_key(email))
        ).rowcount
        or 0
    ) > 0
    user = by_email(email)
    second_factor = user is not None and wrong_codes.lock_of(user) is not None
    if user is not None:
        wrong_codes.unlock(user)
    return Unlocked(password=password, second_factor=second_factor)
