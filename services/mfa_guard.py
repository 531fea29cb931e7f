"""Bounding second-factor guesses (FAC-6), apart from password failures.

Wrong codes count per pending sign-in (5 end it: password again) and per user across every
session, IP and process (10 in a row lock the second factor for 15 minutes, doubling on each
repeat, and email the user; 100 in a row need an admin). Counters are updated with single
atomic statements, and a right code only counts if the lock is still clear at the moment it
is spent (see ``factors.consume_totp``), so racing requests cannot squeeze extra guesses in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import update

from models import User, UserSession, db
from models.types import utcnow
from services import audit, notify


@dataclass(frozen=True)
class Lock:
    """``until`` is None when only an admin can unlock."""

    until: datetime | None


@dataclass(frozen=True)
class Failure:
    sign_in_ended: bool
    lock: Lock | None


def lock_of(user: User, now: datetime | None = None) -> Lock | None:
    now = now or utcnow()
    if user.mfa_failed_attempts >= current_app.config["MFA_WRONG_CODES_HARD_LOCK"]:
        return Lock(until=None)
    if user.mfa_locked_until is not None and user.mfa_locked_until > now:
        return Lock(until=user.mfa_locked_until)
    return None


def record_failure(row: UserSession, method: str) -> Failure:
    cfg = current_app.config
    user = row.user
    sign_in_failures = db.session.execute(
        update(UserSession)
        .where(UserSession.id == row.id)
        .values(failed_codes=UserSession.failed_codes + 1)
        .returning(UserSession.failed_codes)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    in_a_row = db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(mfa_failed_attempts=User.mfa_failed_attempts + 1)
        .returning(User.mfa_failed_attempts)
        .execution_options(synchronize_session=False)
    ).scalar_one()
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
    # Tell the user once per lock, at the failure that caused it.
    if lock is not None and (in_a_row == hard or in_a_row % every == 0):
        audit.record(
            "mfa.locked", subject=user, in_a_row=in_a_row, until=str(lock.until or "admin")
        )
        notify.factor_locked(user, lock.until)
    ended = lock is not None or sign_in_failures >= cfg["MFA_WRONG_CODES_PER_SIGN_IN"]
    return Failure(sign_in_ended=ended, lock=lock)


def record_success(user: User) -> None:
    """A right code ends the run of wrong ones; most sign-ins skip this write entirely."""
    if user.mfa_failed_attempts or user.mfa_locked_until is not None:
        db.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(mfa_failed_attempts=0, mfa_lockouts=0, mfa_locked_until=None)
            .execution_options(synchronize_session=False)
        )


def unlock(user: User) -> None:
    record_success(user)
