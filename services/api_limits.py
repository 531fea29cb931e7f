"""The API's rate limit (OPS-3): requests per token, counted where every worker and every
instance sees the same number.

``limits`` (the library Flask-Limiter is built on) does the counting: a fixed window per
token, in Redis when ``MFA_RATELIMIT_STORAGE_URI`` names it (``redis://127.0.0.1:6379``),
otherwise in the database (services/api_rate_storage.py), so a plain ``make run`` or a clinic
without Redis still shares the count across gunicorn's workers. Never in a process's memory:
each worker would then allow the whole limit on its own.

Why not Flask-Limiter itself: it hooks every request of the app (about 30 us each, the
sign-in's hot path included) to limit one endpoint, and it reads the key before a view runs,
while this limit is per token, known only once the token is checked. The API calls ``hit``
after authentication instead, so a flood of made-up tokens creates no counters at all.

``limits`` is loaded when the API is first used (about 1.5 MB a worker), or at start when
Redis is configured, so that a wrong URI stops the start rather than the first report.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.storage import Storage
    from limits.strategies import FixedWindowRateLimiter

# Storage calls must not hang a request: a Redis that stopped answering costs a second.
REDIS_TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
# What MFA_API_RATE_LIMIT may say: "60/minute", "1000 per hour", "5/second".
RATE = re.compile(r"\s*([1-9][0-9]{0,8})\s*(?:/|per)\s*(second|minute|hour|day)\s*")
_BUILDING = threading.Lock()


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
        from services.api_rate_storage import DatabaseStorage

        return DatabaseStorage()
    from limits.storage import Storage, storage_from_string

    options = REDIS_TIMEOUTS if uri.startswith(("redis://", "rediss://")) else {}
    storage = storage_from_string(uri, **options)
    assert isinstance(storage, Storage)  # "async+..." storages are for asyncio apps
    return storage


def _build(config: Any) -> Limiter:
    from limits import parse
    from limits.strategies import FixedWindowRateLimiter

    storage = make_storage(config.get("MFA_RATELIMIT_STORAGE_URI"))
    prefix = config.get("MFA_RATELIMIT_KEY_PREFIX") or config["MFA_BASE_URL"]
    return Limiter(FixedWindowRateLimiter(storage), parse(config["MFA_API_RATE_LIMIT"]), prefix)


def init_app(app: Flask) -> None:
    """Check the settings; ValueError says what is wrong with them. With Redis configured the
    limiter is built now (a bad URI stops the start), otherwise at the first API request."""
    config = app.config
    if not RATE.fullmatch(str(config["MFA_API_RATE_LIMIT"])):
        raise ValueError(
            f"MFA_API_RATE_LIMIT: {config['MFA_API_RATE_LIMIT']!r} is not a rate such as "
            "60/minute (a number, then / or per, then second, minute, hour or day)"
        )
    if config.get("MFA_RATELIMIT_STORAGE_URI"):
        from limits.errors import ConfigurationError

        try:
            app.extensions["mfa_api_limiter"] = _build(config)
        except ConfigurationError as exc:
            raise ValueError(f"MFA_RATELIMIT_STORAGE_URI: {exc}") from exc


def _limiter() -> Limiter:
    extensions = current_app.extensions
    if "mfa_api_limiter" not in extensions:
        with _BUILDING:
            if "mfa_api_limiter" not in extensions:
                extensions["mfa_api_limiter"] = _build(current_app.config)
    return extensions["mfa_api_limiter"]


def hit(token_id: int) -> Over | None:
    """Count one request of token ``token_id``; ``Over`` when it is one too many.

    If the storage cannot be reached (Redis down), the request goes through and the failure is
    logged: the limit guards the server's load, the token has already been checked, and a
    reporting tool should not fail with Redis.
    """
    limiter = _limiter()
    ids = (limiter.prefix, "api-token", str(token_id))
    try:
        if limiter.strategy.hit(limiter.limit, *ids):
            return None
        reset_at, _ = limiter.strategy.get_window_stats(limiter.limit, *ids)
    except limiter.strategy.storage.base_exceptions:
        current_app.logger.exception("API rate limit storage failed; request let through")
        return None
    return Over(max(1, math.ceil(reset_at - time.time())), limiter.limit)
