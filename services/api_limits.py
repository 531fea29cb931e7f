"""The API's rate limit (OPS-3): requests per token, counted where every worker and every
instance sees the same number.

``limits`` (the library Flask-Limiter is built on) does the counting: a fixed window per
token, in Redis when ``MFA_RATELIMIT_STORAGE_URI`` names it (``redis://127.0.0.1:6379``),
otherwise in the database, so a plain ``make run`` or a clinic without Redis still shares the
count across gunicorn's workers. Never in a process's memory: each worker would then allow
the whole limit on its own.

Why not Flask-Limiter itself: it hooks every request of the app (about 30 us each, the
sign-in's hot path included) to limit one endpoint, and it reads the key before a view runs,
while this limit is per token, known only once the token is checked. The API calls ``hit``
after authentication instead, so a flood of made-up tokens creates no counters at all.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, current_app
from limits import RateLimitItem, parse
from limits.errors import ConfigurationError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import case, delete, select
from sqlalchemy.exc import SQLAlchemyError

from models import ApiRateCounter, db
from models.types import utcnow
from services import upsert

# Storage calls must not hang a request: a Redis that stopped answering costs a second.
REDIS_TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


class DatabaseStorage(Storage):
    """A ``limits`` storage in the app's own database (table ``api_rate_counters``): one row
    per token and window length, incremented by one atomic INSERT ... ON CONFLICT that also
    starts a new window once the old one has expired.

    Each call is its own short transaction on its own connection: the count must stand
    whatever the request does next, and must not commit the request's own work.
    """

    STORAGE_SCHEME = ["clinic-database"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **_: object):
        super().__init__(uri, wrap_exceptions=wrap_exceptions)

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = utcnow()
        ends = now + timedelta(seconds=expiry)
        table = ApiRateCounter.__table__
        expired = table.c.expires_at <= now
        statement = (
            upsert.insert(table)
            .values(key=key, hits=amount, expires_at=ends)
            .on_conflict_do_update(
                index_elements=[table.c.key],
                set_={
                    "hits": case((expired, amount), else_=table.c.hits + amount),
                    "expires_at": case((expired, ends), else_=table.c.expires_at),
                },
            )
            .returning(table.c.hits)
        )
        with db.engine.begin() as connection:
            return int(connection.execute(statement).scalar_one())

    def _row(self, key: str) -> tuple[int, datetime] | None:
        with db.engine.connect() as connection:
            row = connection.execute(
                select(ApiRateCounter.hits, ApiRateCounter.expires_at).where(
                    ApiRateCounter.key == key
                )
            ).first()
        if row is None:
            return None
        hits, ends = row
        return (0, ends) if ends <= utcnow() else (hits, ends)

    def get(self, key: str) -> int:
        row = self._row(key)
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return row[1].timestamp() if row and row[0] else time.time()

    def check(self) -> bool:
        try:
            with db.engine.connect() as connection:
                connection.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with db.engine.begin() as connection:
            return connection.execute(delete(ApiRateCounter)).rowcount

    def clear(self, key: str) -> None:
        with db.engine.begin() as connection:
            connection.execute(delete(ApiRateCounter).where(ApiRateCounter.key == key))


@dataclass(frozen=True)
class Limiter:
    strategy: FixedWindowRateLimiter
    limit: RateLimitItem
    # Tells two clinics sharing one Redis apart; token ids alone would collide.
    prefix: str


@dataclass(frozen=True)
class Over:
    """The limit is used up: the window ends in ``retry_after`` seconds (at least 1)."""

    retry_after: int
    limit: RateLimitItem


def make_storage(uri: str | None) -> Storage:
    """The storage ``MFA_RATELIMIT_STORAGE_URI`` names, or the database's when it is empty."""
    if not uri:
        return DatabaseStorage()
    options = REDIS_TIMEOUTS if uri.startswith(("redis://", "rediss://")) else {}
    storage = storage_from_string(uri, **options)
    assert isinstance(storage, Storage)  # "async+..." storages are for asyncio apps
    return storage


def init_app(app: Flask) -> None:
    """Build the limiter from the config; ValueError says what is wrong with it."""
    config = app.config
    try:
        limit = parse(config["MFA_API_RATE_LIMIT"])
    except ValueError as exc:
        raise ValueError(
            f"MFA_API_RATE_LIMIT: {config['MFA_API_RATE_LIMIT']!r} is not a rate such as 60/minute"
        ) from exc
    uri = config.get("MFA_RATELIMIT_STORAGE_URI")
    try:
        storage = make_storage(uri)
    except ConfigurationError as exc:
        raise ValueError(f"MFA_RATELIMIT_STORAGE_URI: {exc}") from exc
    prefix = config.get("MFA_RATELIMIT_KEY_PREFIX") or config["MFA_BASE_URL"]
    app.extensions["mfa_api_limiter"] = Limiter(FixedWindowRateLimiter(storage), limit, prefix)


def hit(token_id: int) -> Over | None:
    """Count one request of token ``token_id``; ``Over`` when it is one too many.

    If the storage cannot be reached (Redis down), the request goes through and the failure is
    logged: the limit guards the server's load, the token has already been checked, and a
    reporting tool should not fail with Redis.
    """
    limiter: Limiter = current_app.extensions["mfa_api_limiter"]
    ids = (limiter.prefix, "api-token", str(token_id))
    try:
        if limiter.strategy.hit(limiter.limit, *ids):
            return None
        reset_at, _ = limiter.strategy.get_window_stats(limiter.limit, *ids)
    except limiter.strategy.storage.base_exceptions:
        current_app.logger.exception("API rate limit storage failed; request let through")
        return None
    return Over(max(1, math.ceil(reset_at - time.time())), limiter.limit)
