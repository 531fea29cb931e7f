"""Bounding second-factor guesses (FAC-6), apart from password failures.

Wrong codes count per pending sign-in (5 end it: password again), per user across every
session, IP and process (10 in a row lock the second factor for 15 minutes, doubling on each
repeat, and email the user; 100 in a row need an admin), and per client address across
accounts (50 in 15 minutes block the address for 15 minutes).

A code is judged first and counted after, and a gate decides whether the judgement stands.
The gate is the user's row, locked (FOR UPDATE on PostgreSQL; SQLite has one write lock),
and open while their second factor is not locked, every lock the run has earned is applied
and the client address is not blocked:

- a right code is spent by one conditional UPDATE (its factor's step, the emailed or texted
  code, the recovery code) that carries the gate (``guarded``): it matches only while the
  gate is open, and what it returns says whether a run of wrong codes is left to clear. A
  ``Passed`` comes only from such a statement, so no kind of code can sign anyone in past
  the gate. The sign-in's own limit is the promotion's to check (``sessions.promote``);
- anything else is counted (``count_wrong``): one conditional UPDATE per counter, each
  adding one only while it is under its limit.

A code the gate refuses to count is not counted and everything the request did is rolled
back, so the one who sent it learns nothing but the refusal. Because every judgement that
stands takes the user's row first, judgements for one user stand one at a time in the order
they took it: under any concurrency at most 5 count per sign-in and 10 in a row per account
before the lock, and a right code among racing wrong ones wins only if it took the row
before the lock landed. Checking the counters with a read and writing them later would let
racing requests all pass the check; that is what the gate is for.

The lock is held until the request commits, which is why nothing slow (mail) runs before the
commit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Update,
    and_,
    bindparam,
    exists,
    or_,
    select,
    update,
)

from models import SignInThrottle, User, UserSession, db
from models.sessions import PENDING
from models.types import utcnow
from services import audit, notify, sessions, throttle
from services.client import client_ip

ADMIN_LOCK_RETRY_AFTER = throttle.ADMIN_LOCK_RETRY_AFTER


@dataclass(frozen=True)
class Lock:
    """``until`` is None when only an admin can unlock."""

    until: datetime | None

    def retry_after(self, now: datetime) -> int:
        if self.until is None:
            return ADMIN_LOCK_RETRY_AFTER
        return max(1, math.ceil((self.until - now).total_seconds()))


@dataclass(frozen=True)
class Refused:
    """The try was not counted. ``sign_in_ended``: this sign-in has used its tries; otherwise
    the account is locked (``lock``) or the client address is (``lock`` is None)."""

    sign_in_ended: bool
    lock: Lock | None
    retry_after: int


@dataclass(frozen=True)
class Counted:
    """A wrong try that stands: the account's run of wrong codes and the sign-in's tries,
    this one included."""

    in_a_row: int
    sign_in_tries: int


@dataclass(frozen=True)
class Passed:
    """A right code, spent behind the gate. ``run_left``: the user's row, read under its lock,
    has wrong codes or a lock that this success clears."""

    run_left: bool


@dataclass(frozen=True)
class Failure:
    sign_in_ended: bool
    lock: Lock | None


def locked_sql(users: Any, *, now: Any, hard: Any) -> ColumnElement[bool]:
    """The lock rule in SQL, for statements that must see it at the moment they run: 100 in a
    row (an admin must unlock), or a lock whose time is not over. ``lock_of`` reads the same
    rule from a loaded row."""
    return or_(
        users.mfa_failed_attempts >= hard,
        and_(users.mfa_locked_until.is_not(None), users.mfa_locked_until > now),
    )


def lock_of(user: User, now: datetime | None = None) -> Lock | None:
    """The lock on the user's second factor, read from the row as loaded (see locked_sql)."""
    now = now or utcnow()
    if user.mfa_failed_attempts >= current_app.config["MFA_WRONG_CODES_HARD_LOCK"]:
        return Lock(until=None)
    if user.mfa_locked_until is not None and user.mfa_locked_until > now:
        return Lock(until=user.mfa_locked_until)
    return None


# Built once with bind parameters: these run on every code a person types (PERF-2).
_USERS, _SESSIONS, _THROTTLES = (
    User.__table__.c,
    UserSession.__table__.c,
    SignInThrottle.__table__.c,
)
# The gate, read from the user's row: bind parameters as ``_gate_params`` gives them.
_GATE_OPEN = (
    ~locked_sql(_USERS, now=bindparam("p_now"), hard=bindparam("p_hard")),
    # Every lock this run has earned has been applied: the 10th wrong code in a row is
    # judged, the 11th waits until the lock it caused is over.
    _USERS.mfa_lockouts >= _USERS.mfa_failed_attempts // bindparam("p_every", type_=Integer),
    ~exists().where(
        and_(
            _THROTTLES.key == bindparam("p_address"),
            _THROTTLES.blocked_until > bindparam("p_now"),
        )
    ),
)
_COUNT_FOR_ACCOUNT = (
    update(User.__table__)
    .where(_USERS.id == bindparam("p_user"), *_GATE_OPEN)
    .values(mfa_failed_attempts=_USERS.mfa_failed_attempts + 1)
    .returning(_USERS.mfa_failed_attempts)
)
_COUNT_FOR_SIGN_IN = (
    update(UserSession.__table__)
    .where(
        _SESSIONS.id == bindparam("p_id"),
        _SESSIONS.state == PENDING,
        _SESSIONS.failed_codes < bindparam("p_max"),
    )
    .values(failed_codes=_SESSIONS.failed_codes + 1)
    .returning(_SESSIONS.failed_codes)
)


def guarded(spend: Update, user_id: ColumnElement[int]) -> Update:
    """``spend``, the UPDATE that spends a right code of the user ``user_id`` names, made to
    match only while the gate is open, and to return ``run_left`` for ``passed``. Both read
    the user's row locked: a locking read returns the row as the last commit left it, where a
    plain one in the same statement would see it as the statement began. Run it with
    ``gate_params()`` among its parameters."""
    users = select(_USERS.id).where(_USERS.id == user_id, *_GATE_OPEN).with_for_update()
    run_left = (
        select(
            or_(
                _USERS.mfa_failed_attempts > 0,
                _USERS.mfa_lockouts > 0,
                _USERS.mfa_locked_until.is_not(None),
            )
        )
        .where(_USERS.id == user_id)
        .with_for_update()
        .scalar_subquery()
    )
    return spend.where(exists(users)).returning(run_left.label("run_left"))


def gate_params() -> dict[str, Any]:
    cfg = current_app.config
    return {
        "p_now": utcnow(),
        "p_hard": cfg["MFA_WRONG_CODES_HARD_LOCK"],
        "p_every": cfg["MFA_WRONG_CODES_BEFORE_LOCK"],
        "p_address": throttle.wrong_codes_key(client_ip()),
    }


def spend(guarded_spend: Update, **params: Any) -> Row[Any] | None:
    """Run a ``guarded`` spend with its own ``params`` and the gate's; its row, if it matched."""
    return db.session.execute(guarded_spend, {**params, **gate_params()}).first()


def passed(spent: Row[Any] | None) -> Passed | None:
    """What a ``guarded`` spend returned, if it spent a code."""
    return None if spent is None else Passed(run_left=bool(spent.run_left))


def count_wrong(row: UserSession) -> Counted | Refused:
    """Count a try that was not a right code for the pending sign-in ``row``, behind the gate.

    Refused: nothing is counted (the transaction is rolled back, with whatever the judging
    did) and the try tells its sender nothing but the refusal.
    """
    cfg = current_app.config
    params = gate_params()
    in_a_row = db.session.execute(
        _COUNT_FOR_ACCOUNT, {"p_user": row.user_id, **params}
    ).scalar_one_or_none()
    if in_a_row is None:
        db.session.rollback()
        return _refusal(row, params["p_now"])
    tries = db.session.execute(
        _COUNT_FOR_SIGN_IN,
        {"p_id": row.id, "p_max": cfg["MFA_WRONG_CODES_PER_SIGN_IN"]},
    ).scalar_one_or_none()
    if tries is None:
        db.session.rollback()
        return Refused(sign_in_ended=True, lock=None, retry_after=0)
    return Counted(in_a_row=in_a_row, sign_in_tries=tries)


def _refusal(row: UserSession, now: datetime) -> Refused:
    """Why the account reservation matched nothing: the address, or the account's lock."""
    until = throttle.blocked_until(throttle.wrong_codes_key(client_ip()))
    if until is not None:
        audit.record("mfa.address_blocked", subject=row.user, until=str(until))
        db.session.commit()
        return Refused(sign_in_ended=False, lock=None, retry_after=Lock(until).retry_after(now))
    db.session.refresh(row.user)
    # A lock earned but not yet written (its request is still comparing) reads as no lock:
    # the full lock time is the honest answer then.
    lock = lock_of(row.user, now) or Lock(until=now + current_app.config["MFA_LOCK_FOR"])
    return Refused(sign_in_ended=False, lock=lock, retry_after=lock.retry_after(now))


def record_failure(row: UserSession, method: str, counted: Counted) -> Failure:
    """The counted try was wrong: count it for the address too, lock the
    factor at each tenth in a row (email sent), and say whether the sign-in is over. Commits
    before sending the email, so no lock is held while a mail server answers."""
    cfg = current_app.config
    user = row.user
    in_a_row = counted.in_a_row
    throttle.record_wrong_code(client_ip())
    audit.record("mfa.code_failed", subject=user, method=method, in_a_row=in_a_row)

    every, hard = cfg["MFA_WRONG_CODES_BEFORE_LOCK"], cfg["MFA_WRONG_CODES_HARD_LOCK"]
    lock: Lock | None = None
    if in_a_row >= hard:
        lock = Lock(until=None)
    elif in_a_row % every == 0:
        lockouts = in_a_row // every
        lock = Lock(until=utcnow() + cfg["MFA_LOCK_FOR"] * 2 ** (lockouts - 1))
        db.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(mfa_locked_until=lock.until, mfa_lockouts=lockouts)
            .execution_options(synchronize_session=False)
        )
    if lock is not None:
        audit.record(
            "mfa.locked", subject=user, in_a_row=in_a_row, until=str(lock.until or "admin")
        )
    ended = lock is not None or counted.sign_in_tries >= cfg["MFA_WRONG_CODES_PER_SIGN_IN"]
    if ended:
        sessions.end(row, "too_many_codes", only_if_pending=True)
    db.session.commit()
    if lock is not None:
        # Told once per lock, at the failure that caused it.
        notify.factor_locked(user, lock.until)
        db.session.commit()
    return Failure(sign_in_ended=ended, lock=lock)


# Core, built once like the reservations above: it runs at every right code.
_CLEAR_RUN = (
    update(User.__table__)
    .where(_USERS.id == bindparam("p_user"))
    .values(mfa_failed_attempts=0, mfa_lockouts=0, mfa_locked_until=None)
)


def record_success(user: User, passed: Passed | None = None) -> None:
    """A right code ends the run of wrong ones. ``passed`` (a code spent behind the gate)
    says whether there is a run; without it (a factor proved in the wizard) it is cleared
    whatever it was."""
    if passed is None or passed.run_left:
        db.session.execute(_CLEAR_RUN, {"p_user": user.id})


def unlock(user: User) -> None:
    record_success(user)
