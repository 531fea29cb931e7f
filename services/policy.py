"""Reading and changing the clinic's MFA policy; the rules for valid values live here."""

from __future__ import annotations

from sqlalchemy import select

from models import ClinicPolicy, db
from models.factors import TOTP
from models.policy import MODES

# Methods this build can deliver, in the order the wizard offers them.
METHOD_LABELS = {TOTP: "Authenticator app"}
MAX_REMEMBER_DAYS = 90


class PolicyError(ValueError):
    """A policy value that cannot be stored; the message says why."""


def current() -> ClinicPolicy:
    policy = db.session.scalar(select(ClinicPolicy).where(ClinicPolicy.id == 1))
    if policy is None:
        policy = ClinicPolicy(
            id=1,
            mode="off",
            allowed_methods=TOTP,
            remember_days=90,
            support_contact="",
            admins_app_only=True,
            code_valid_minutes=5,
        )
        db.session.add(policy)
        db.session.flush()
    return policy


def parse_methods(raw: str) -> str:
    methods = [m.strip().lower() for m in raw.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHOD_LABELS]
    if unknown:
        raise PolicyError(
            f"Unknown method {', '.join(unknown)}; choose from {', '.join(METHOD_LABELS)}."
        )
    if not methods:
        raise PolicyError("Allow at least one method.")
    return ",".join(m for m in METHOD_LABELS if m in methods)


def update(
    *,
    mode: str | None = None,
    methods: str | None = None,
    remember_days: int | None = None,
    support_contact: str | None = None,
) -> ClinicPolicy:
    policy = current()
    if mode is not None:
        if mode not in MODES:
            raise PolicyError(f"Mode must be one of {', '.join(MODES)}.")
        policy.mode = mode
    if methods is not None:
        policy.allowed_methods = parse_methods(methods)
    if remember_days is not None:
        if not 0 <= remember_days <= MAX_REMEMBER_DAYS:
            raise PolicyError(f"Remember days must be between 0 (off) and {MAX_REMEMBER_DAYS}.")
        policy.remember_days = remember_days
    if support_contact is not None:
        policy.support_contact = support_contact.strip()[:200]
    return policy
