"""Password hashing with argon2id, at OWASP's recommended parameters unless configured.

``MFA_PASSWORD_HASH_PARAMS`` sets them (``"t=2,m=19456,p=1"``, or a mapping with those keys or
argon2's names); the test suite uses cheap ones. Hashes made with other parameters are rehashed
at the next sign-in. The unknown-email path verifies against a dummy hash made by the same
hasher, so a wrong address costs exactly what a wrong password does (AUTH-1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app, has_app_context

MIN_LENGTH = 12
MAX_LENGTH = 256
_DUMMY_TEXT = "no account has this password, it only burns the same time"


@dataclass(frozen=True)
class HashParams:
    time_cost: int
    memory_cost: int  # KiB
    parallelism: int


# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
OWASP_PARAMS = HashParams(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_NAMES = {"t": "time_cost", "m": "memory_cost", "p": "parallelism"}


def parse_params(value: str | Mapping[str, object] | None) -> HashParams:
    """``MFA_PASSWORD_HASH_PARAMS`` read: None or "" for OWASP's; otherwise every one of t, m
    (KiB) and p, as ``"t=2,m=19456,p=1"`` or a mapping. ValueError says what is wrong."""
    if value is None or value == "":
        return OWASP_PARAMS
    if isinstance(value, str):
        pairs = [part.partition("=") for part in value.split(",")]
        if any(not sep for _, sep, _ in pairs):
            raise ValueError("write it as t=2,m=19456,p=1")
        items: dict[str, object] = {key.strip(): number.strip() for key, _, number in pairs}
    else:
        items = dict(value)
    fields: dict[str, int] = {}
    for key, number in items.items():
        name = _NAMES.get(key, key)
        if name not in _NAMES.values():
            raise ValueError(f"unknown parameter {key!r}; use t, m and p")
        try:
            fields[name] = int(str(number))
        except ValueError:
            raise ValueError(f"{key} must be a whole number, got {number!r}") from None
    if set(fields) != set(_NAMES.values()):
        raise ValueError("give all three of t, m and p")
    params = HashParams(**fields)
    # argon2's own lower bounds; below them it refuses to hash at all.
    if (
        params.time_cost < 1
        or params.parallelism < 1
        or params.memory_cost < 8 * params.parallelism
    ):
        raise ValueError("argon2 needs t >= 1, p >= 1 and m >= 8 * p")
    return params


class Hasher:
    """argon2id at one set of parameters, with the dummy hash made at the same ones."""

    def __init__(self, params: HashParams) -> None:
        self.params = params
        self.argon2 = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
            type=Type.ID,
        )
        self._dummy: str | None = None

    def dummy_hash(self) -> str:
        if self._dummy is None:  # a race only computes it twice
            self._dummy = self.argon2.hash(_DUMMY_TEXT)
        return self._dummy


def init_app(app: Flask) -> None:
    """Build the app's hasher from its config; ValueError if the parameters are unusable."""
    params = parse_params(app.config.get("MFA_PASSWORD_HASH_PARAMS"))
    app.extensions["mfa_password_hasher"] = Hasher(params)


@cache
def _owasp_hasher() -> Hasher:
    return Hasher(OWASP_PARAMS)


def hasher() -> Hasher:
    """The app's hasher; outside an app (the bench's own timing), OWASP's."""
    if has_app_context():
        return current_app.extensions["mfa_password_hasher"]
    return _owasp_hasher()


def hash_password(password: str) -> str:
    return hasher().argon2.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if the password matches; with no hash, spends the same time and says False."""
    current = hasher()
    try:
        return (
            current.argon2.verify(password_hash or current.dummy_hash(), password)
            and password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return hasher().argon2.check_needs_rehash(password_hash)


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable, or None. Length only, as NIST SP 800-63B advises."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    return None
