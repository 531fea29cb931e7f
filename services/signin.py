"""What follows the password (AUTH-4): the one place that decides it.

Inputs are the user (their factors), the clinic policy and the request (a remembered-device
cookie). Later rules (role policies with go-live dates, per-user overrides, one-time bypass,
trusted locations) are more branches here, not new call sites.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from models import ClinicPolicy, MfaFactor, User
from models.policy import MODE_OFF, MODE_OPTIONAL
from services import devices, factors
from services.policy import methods_for, remember_days_for


class Next(StrEnum):
    SIGNED_IN = "signed_in"  # no second factor needed
    REMEMBERED = "remembered"  # a remembered device stands in for the second factor
    CHALLENGE = "challenge"  # ask for a code from the user's default usable factor
    SETUP = "setup"  # the user must (or may) enrol first


@dataclass(frozen=True)
class Decision:
    next: Next
    reason: str
    method: str | None = None
    factor: MfaFactor | None = None
    skippable: bool = False


def usable_factors(user: User, clinic: ClinicPolicy) -> list[MfaFactor]:
    """The user's factors that the policy still allows them to use, default first."""
    allowed = methods_for(user, clinic)
    usable = [f for f in factors.for_user(user.id) if f.kind in allowed]
    return sorted(usable, key=lambda f: (not f.is_default, f.id))


def decide(user: User, clinic: ClinicPolicy) -> Decision:
    usable = usable_factors(user, clinic)
    if usable:
        # Whoever has enrolled is always asked, whatever the mode: it is their protection.
        if devices.recognised(user, remember_days_for(user, clinic)) is not None:
            return Decision(Next.REMEMBERED, "remembered_device", method="device")
        return Decision(Next.CHALLENGE, "has_factor", method=usable[0].kind, factor=usable[0])
    # A factor the policy no longer allows (say SMS was switched off) counts as none.
    if clinic.mode == MODE_OFF:
        return Decision(Next.SIGNED_IN, "mfa_off", method="none")
    if clinic.mode == MODE_OPTIONAL:
        return Decision(Next.SETUP, "optional_not_enrolled", skippable=True)
    return Decision(Next.SETUP, "required_not_enrolled")


def setup_owed(user: User, clinic: ClinicPolicy) -> bool:
    """True when ``user`` has no usable factor and the policy no longer lets them go without
    one: a session they opened without a second factor must now set one up."""
    if usable_factors(user, clinic):
        return False
    decision = decide(user, clinic)
    return decision.next is Next.SETUP and not decision.skippable
