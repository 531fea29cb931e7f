"""TOTP as RFC 6238 fixes it: SHA-1, 6 digits, 30-second steps, one step of drift each way."""

from __future__ import annotations

import hmac
import re
import time

import pyotp

DIGITS = 6
PERIOD = 30
DRIFT_STEPS = 1
SECRET_BYTES = 20  # 160 bits, RFC 4226's recommended length

_SEPARATORS = re.compile(r"[\s\-]")


def new_secret() -> str:
    return pyotp.random_base32(length=SECRET_BYTES * 8 // 5)


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).provisioning_uri(
        name=account, issuer_name=issuer
    )


def group_secret(secret: str) -> str:
    """The key in groups of four, for typing into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def normalise_code(raw: str | None, digits: int = DIGITS) -> str | None:
    """Accept pasted spaces and dashes; anything but exactly ``digits`` digits is None."""
    if raw is None:
        return None
    code = _SEPARATORS.sub("", raw)
    if len(code) != digits or not code.isascii() or not code.isdigit():
        return None
    return code


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // PERIOD)


def matching_step(
    secret: str, code: str, *, after_step: int, now: float | None = None
) -> int | None:
    """The time step whose code ``code`` is, within the drift window and later than
    ``after_step`` (so a code, or any earlier one, is never accepted twice), else None."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)
    step = current_step(now)
    found = None
    # Compare every candidate so the time taken does not say which step matched.
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code) and candidate > after_step:
            found = candidate
    return found
