"""Recovery codes (FAC-5): 10 single-use codes of 10 base32 characters, stored as keyed hashes."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import delete, func, select, update

from models import RecoveryCode, db
from models.types import utcnow
from services import wrong_codes
from services.crypto import keyed_hash

COUNT = 10
LENGTH = 10
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 base32: no 0/1/8/9 to confuse

_NOT_CODE = re.compile(r"[\s\-]")


def display(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


def normalise(raw: str | None) -> str | None:
    if raw is None:
        return None
    code = _NOT_CODE.sub("", raw).upper()
    if len(code) != LENGTH or any(ch not in ALPHABET for ch in code):
        return None
    return code


def _hash(user_id: int, code: str) -> bytes:
    # The user id is mixed in so the same code for two users never collides on the index.
    return keyed_hash(f"recovery:{user_id}:{code}")


def new_codes() -> list[str]:
    return ["".join(secrets.choice(ALPHABET) for _ in range(LENGTH)) for _ in range(COUNT)]


def store(user_id: int, codes: list[str]) -> None:
    """Replace the user's codes with ``codes`` (only their hashes are kept)."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    db.session.add_all(RecoveryCode(user_id=user_id, code_hash=_hash(user_id, c)) for c in codes)


def discard_all(user_id: int) -> None:
    """No factor is left: codes that stand in for one would only confuse a later setup."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))


def generate(user_id: int) -> list[str]:
    """Replace the user's codes with a fresh set; returns the plaintext to show once."""
    codes = new_codes()
    store(user_id, codes)
    return codes


def use(user_id: int, raw: str | None) -> wrong_codes.Passed | None:
    """Spend a code at sign-in, behind the gate (services/wrong_codes.py). The conditional
    UPDATE makes it single-use even under races."""
    code = normalise(raw)
    if code is None:
        return None
    spend = (
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == _hash(user_id, code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return wrong_codes.passed(wrong_codes.spend(wrong_codes.guarded(spend, RecoveryCode.user_id)))


def remaining(user_id: int) -> int:
    return (
        db.session.scalar(
            select(func.count(RecoveryCode.id)).where(
                RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
            )
        )
        or 0
    )
