"""Password throttling (AUTH-1) kept in the database, so it holds across workers and instances.

Each failed sign-in counts against the email address (hashed, so unknown addresses behave
exactly like known ones) and against the client's IP address. After a few free tries every
failure doubles the wait, up to a cap. An address that fails MFA_PASSWORD_HARD_LOCK_AFTER
times in a row is refused until an admin unlocks it or its password is reset.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import ColumnElement, String, case, delete, exists, or_, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from models import SignInThrottle, User, db
from models.types import utcnow
from services import upsert
from services.client import client_ip
from services.passwords import verify_password
from services.wording import plural

# Until an admin acts there is no time to give; an hour is an honest hint for Retry-After.
ADMIN_LOCK_RETRY_AFTER = 3600


@dataclass(frozen=True)
class Block:
    """A refusal; ``until`` is None when only an admin can lift it."""

    until: datetime | None

    def seconds_left(self, now: datetime) -> int | None:
        if self.until is None:
            return None
        return max(1, int((self.until - now).total_seconds() + 0.999))

    def message(self, now: datetime) -> str:
        """What the person reads on the 429 page."""
        wait = self.seconds_left(now)
        if wait is None:
            return (
                "Too many failed attempts. Ask your clinic's administrator to unlock your account."
            )
        return f"Too many failed attempts. Try again in {plural(wait, 'second')}."

    def retry_after(self, now: datetime) -> int:
        """Seconds for Retry-After; with no end in sight (an admin must act), an hour."""
        wait = self.seconds_left(now)
        return wait if wait is not None else ADMIN_LOCK_RETRY_AFTER


def email_key(email: str) -> str:
    return "email:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:64]


class EmailKeySql(FunctionElement[str]):
    """``email_key`` in SQL, of a column holding normalised addresses (users.email), so the
    users list can filter on a password lock without a hash per row in Python. A test holds
    it to the Python one."""

    type = String()
    inherit_cache = True


@compiles(EmailKeySql, "postgresql")
def _email_key_postgresql(element: EmailKeySql, compiler: SQLCompiler, **kw: object) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"('email:' || encode(sha256(convert_to({column}, 'UTF8')), 'hex'))"


@compiles(EmailKeySql, "sqlite")
def _email_key_sqlite(element: EmailKeySql, compiler: SQLCompiler, **kw: object) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"('email:' || {SQLITE_SHA256}({column}))"


SQLITE_SHA256 = "mfa_sha256_hex"


def sqlite_sha256_hex(text: str | None) -> str | None:
    """SQLite has no SHA-256: app.py registers this on each connection as SQLITE_SHA256."""
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def email_locked_sql(email: ColumnElement[str], now: datetime) -> ColumnElement[bool]:
    """The address in ``email`` is refused a password try now (``check`` finds a block on
    it): hard-locked until an admin unlocks it, or waiting out a delay."""
    hard = current_app.config["MFA_PASSWORD_HARD_LOCK_AFTER"]
    return exists().where(
        SignInThrottle.key == EmailKeySql(email),
        or_(SignInThrottle.failures >= hard, SignInThrottle.blocked_until > now),
    )


def ip_key(ip: str) -> str:
    return "ip:" + ip


def delay_after(failures: int, free: int, cap: timedelta) -> timedelta:
    """0 for the free tries, then 1 s, 2 s, 4 s ... up to ``cap``."""
    if failures < free:
        return timedelta(0)
    exponent = min(failures - free, 30)
    return min(timedelta(seconds=2**exponent), cap)


def _settings(key: str) -> tuple[int, int | None]:
    cfg = current_app.config
    if key.startswith("ip:"):
        return cfg["MFA_PASSWORD_FREE_TRIES_PER_IP"], None
    return cfg["MFA_PASSWORD_FREE_TRIES_PER_ACCOUNT"], cfg["MFA_PASSWORD_HARD_LOCK_AFTER"]


@dataclass(frozen=True)
class Status:
    """What ``check`` found: the block in force, if any, and which keys have a count."""

    block: Block | None
    counted: frozenset[str]


def check(*keys: str) -> Status:
    """The longest block among ``keys`` (None if a try is allowed now)."""
    now = utcnow()
    rows = db.session.scalars(select(SignInThrottle).where(SignInThrottle.key.in_(keys))).all()
    counted = frozenset(row.key for row in rows)
    worst: Block | None = None
    for row in rows:
        _, hard = _settings(row.key)
        if hard is not None and row.failures >= hard:
            return Status(Block(until=None), counted)
        active = row.blocked_until is not None and row.blocked_until > now
        if active and (worst is None or (worst.until and row.blocked_until > worst.until)):
            worst = Block(until=row.blocked_until)
    return Status(worst, counted)


def _upsert(key: str, now: datetime, window: timedelta | None = None) -> int:
    """Add one failure atomically and return the new count. With ``window``, the count
    restarts after that long without a failure: clinics share one address behind NAT."""
    stmt = upsert.insert(SignInThrottle).values(key=key, failures=1, last_failure_at=now)
    counted = SignInThrottle.failures + 1
    if window is not None:
        counted = case(
            (SignInThrottle.last_failure_at < now - window, 1),
            else_=SignInThrottle.failures + 1,
        )
    stmt = stmt.on_conflict_do_update(
        index_elements=[SignInThrottle.key],
        set_={"failures": counted, "last_failure_at": now},
    ).returning(SignInThrottle.failures)
    return int(db.session.execute(stmt).scalar_one())


def record_failure(*keys: str) -> None:
    now = utcnow()
    cap = current_app.config["MFA_PASSWORD_MAX_DELAY"]
    for key in keys:
        window = current_app.config["MFA_PASSWORD_IP_WINDOW"] if key.startswith("ip:") else None
        failures = _upsert(key, now, window)
        free, _ = _settings(key)
        wait = delay_after(failures, free, cap)
        if wait:
            db.session.execute(
                update(SignInThrottle)
                .where(SignInThrottle.key == key)
                .values(blocked_until=now + wait)
            )


def wrong_codes_key(ip: str) -> str:
    return "codes-ip:" + ip


def record_wrong_code(ip: str) -> None:
    """Count a wrong second-factor code from ``ip``, whichever account it was for (FAC-6).

    The limit-th wrong code within the window blocks the address for the window; while
    blocked, the gate of ``wrong_codes`` lets no code from it count or sign in.
    """
    cfg = current_app.config
    now, window = utcnow(), cfg["MFA_WRONG_CODES_ADDRESS_WINDOW"]
    key = wrong_codes_key(ip)
    if _upsert(key, now, window) >= cfg["MFA_WRONG_CODES_PER_ADDRESS"]:
        db.session.execute(
            update(SignInThrottle)
            .where(SignInThrottle.key == key)
            .values(blocked_until=now + window)
        )


def blocked_until(key: str) -> datetime | None:
    """When the block on ``key`` ends, if it is blocked now."""
    until = db.session.scalar(select(SignInThrottle.blocked_until).where(SignInThrottle.key == key))
    return until if until is not None and until > utcnow() else None


def reset(*keys: str, status: Status | None = None) -> None:
    """Forget the counts of ``keys``; with the ``status`` of a check just made, only those
    that have one (most sign-ins have none, and skip the write)."""
    if status is not None:
        keys = tuple(k for k in keys if k in status.counted)
    if keys:
        db.session.execute(delete(SignInThrottle).where(SignInThrottle.key.in_(keys)))


def check_own_password(user: User, password: str) -> Block | bool:
    """A signed-in person's password typed again (re-authentication, a password change),
    throttled like sign-in (AUTH-1): the Block while tries are refused, else whether it is
    right. A wrong one counts against the address and the IP; the caller commits."""
    keys = (email_key(user.email), ip_key(client_ip()))
    status = check(*keys)
    if status.block is not None:
        return status.block
    if not verify_password(user.password_hash, password):
        record_failure(*keys)
        return False
    reset(keys[0], status=status)
    return True
