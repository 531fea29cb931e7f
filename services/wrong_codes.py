"""Bounding second-factor guesses (FAC-6), apart from password failures.

Wrong codes count per pending sign-in (5 end it: password again), per user across every
session, IP and process (10 in a row lock the second factor for 15 minutes, doubling on each
repeat, and email the user; 100 in a row need an admin), and per client address across
accounts (50 in 15 minutes block the address for 15 minutes).

A try is *reserved* before any code is compared: one conditional UPDATE per counter adds one
only while it is under its limit and tells the request whether it may compare. Checking the
counters first and writing them after the comparison let racing requests all pass the check;
reserving first means that under any concurrency at most 5 codes are compared per sign-in
and at most 10 per account before the lock. The reservation counts every submission that is
not a right code, malformed ones included; a right code then clears the run
(``record_success``).

The UPDATE holds the user's row (PostgreSQL) or the database's write lock (SQLite) until the
request commits, so tries for one user are compared one at a time: cheap, since comparing a
code costs microseconds, and why nothing slow (mail) runs before the commit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, Integer, and_, bindparam, exists, or_, update

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
    """No code was compared. ``sign_in_ended``: this sign-in has used its tries; otherwise
    the account is locked (``lock``) or the client address is (``lock`` is None)."""

    sign_in_ended: bool
    lock: Lock | None
    retry_after: int


@dataclass(frozen=True)
class Reserved:
    """One try that may be compared; ``in_a_row`` counts it as wrong until it proves right."""

    in_a_row: int
    sign_in_tries: int


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
_RESERVE_FOR_ACCOUNT = (
    update(User.__table__)
    .where(
        _USERS.id == bindparam("p_user"),
        ~locked_sql(_USERS, now=bindparam("p_now"), hard=bindparam("p_hard")),
        # Every lock this run has earned has been applied: the 10th wrong code in a row is
        # compared, the 11th waits until the lock it caused is over.
        _USERS.mfa_lockouts >= _USERS.mfa_failed_attempts // bindparam("p_every", type_=Integer),
        ~exists().where(
            and_(
                _THROTTLES.key == bindparam("p_address"),
                _THROTTLES.blocked_until > bindparam("p_now"),
            )
        ),
    )
    .values(mfa_failed_attempts=_USERS.mfa_failed_attempts + 1)
    .returning(_USERS.mfa_failed_attempts)
)
_RESERVE_FOR_SIGN_IN = (
    update(UserSession.__table__)
    .where(
        _SESSIONS.id == bindparam("p_id"),
        _SESSIONS.state == PENDING,
        _SESSIONS.failed_codes < bindparam("p_max"),
    )
    .values(failed_codes=_SESSIONS.failed_codes + 1)
    .returning(_SESSIONS.failed_codes)
)


def reserve(row: UserSession) -> Reserved | Refused:
    """Reserve one try for the pending sign-in ``row`` before comparing any code.

    Refused: nothing is counted (the transaction is rolled back) and no code may be compared.
    """
    cfg = current_app.config
    now = utcnow()
    in_a_row = db.session.execute(
        _RESERVE_FOR_ACCOUNT,
        {
            "p_user": row.user_id,
            "p_hard": cfg["MFA_WRONG_CODES_HARD_LOCK"],
            "p_now": now,
            "p_every": cfg["MFA_WRONG_CODES_BEFORE_LOCK"],
            "p_address": throttle.wrong_codes_key(client_ip()),
        },
    ).scalar_one_or_none()
    if in_a_row is None:
        db.session.rollback()
        return _refusal(row, now)
    tries = db.session.execute(
        _RESERVE_FOR_SIGN_IN,
        {"p_id": row.id, "p_max": cfg["MFA_WRONG_CODES_PER_SIGN_IN"]},
    ).scalar_one_or_none()
    if tries is None:
        db.session.rollback()
        return Refused(sign_in_ended=True, lock=None, retry_after=0)
    return Reserved(in_a_row=in_a_row, sign_in_tries=tries)


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


def record_failure(row: UserSession, method: str, reserved: Reserved) -> Failure:
    """The reserved try was wrong: it stays counted; count it for the address too, lock the
    factor at each tenth in a row (email sent), and say whether the sign-in is over. Commits
    before sending the email, so no lock is held while a mail server answers."""
    cfg = current_app.config
    user = row.user
    in_a_row = reserved.in_a_row
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
    ended = lock is not None or reserved.sign_in_tries >= cfg["MFA_WRONG_CODES_PER_SIGN_IN"]
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


def record_success(user: User) -> None:
    """A right code ends the run of wrong ones, including the try reserved for it."""
    db.session.execute(_CLEAR_RUN, {"p_user": user.id})


def unlock(user: User) -> None:
    record_success(user)
