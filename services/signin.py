"""What follows the password (AUTH-4): the one place that decides it.

Inputs are the user (their factors), the clinic policy and the request (a remembered-device
cookie). Later rules (role policies with go-live dates, per-user overrides, one-time bypass,
trusted locations) are more branches here, not new call sites.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from models import ClinicPolicy, User
from models.policy import MODE_OFF, MODE_OPTIONAL
from services import devices


class Next(StrEnum):
    SIGNED_IN = "signed_in"  # no second factor needed
    REMEMBERED = "remembered"  # a remembered device stands in for the second factor
    CHALLENGE = "challenge"  # ask for a code from the user's default factor
    SETUP = "setup"  # the user must (or may) enrol first


@dataclass(frozen=True)
class Decision:
    next: Next
    reason: str
    method: str | None = None
    skippable: bool = False


def decide(user: User, policy: ClinicPolicy) -> Decision:
    factor = user.default_factor
    if factor is not None:
        # Whoever has enrolled is always asked, whatever the mode: it is their protection.
        if devices.recognised(user, policy.remember_days) is not None:
            return Decision(Next.REMEMBERED, "remembered_device", method="device")
        return Decision(Next.CHALLENGE, "has_factor", method=factor.kind)
    if policy.mode == MODE_OFF:
        return Decision(Next.SIGNED_IN, "mfa_off", method="none")
    if policy.mode == MODE_OPTIONAL:
        return Decision(Next.SETUP, "optional_not_enrolled", skippable=True)
    return Decision(Next.SETUP, "required_not_enrolled")
