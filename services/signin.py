"""What follows the password (AUTH-4): the one place that decides it.

Inputs are the user (their factors, a one-time bypass an admin granted), the effective policy
for them (services/requirement.py: clinic, role rollout, override, date) and the request (a
remembered-device cookie, the address). ``decide_and_claim`` is what the password step calls:
it also spends a bypass that ``decide`` chose.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from models import ClinicPolicy, MfaFactor, User
from models.policy import MODE_OFF, MODE_OPTIONAL
from services import bypass, devices, factors, locations, requirement
from services.policy import remember_days_for
from services.requirement import Requirement


class Next(StrEnum):
    SIGNED_IN = "signed_in"  # no second factor needed
    REMEMBERED = "remembered"  # a remembered device or trusted address stands in for it
    CHALLENGE = "challenge"  # ask for a code from the user's default usable factor
    SETUP = "setup"  # the user must (or may) enrol first


@dataclass(frozen=True)
class Decision:
    next: Next
    reason: str
    method: str | None = None
    factor: MfaFactor | None = None
    skippable: bool = False
    # Set when setup may be skipped only until a go-live date ("required from ...").
    skip_until: date | None = None
    # This sign-in uses the one-time bypass an admin granted (ADM-6).
    bypass: bool = False


def usable_factors(user: User, clinic: ClinicPolicy) -> list[MfaFactor]:
    """The user's factors that the policy still allows them to use, default first."""
    return _usable(user, requirement.of(user, clinic))


def _usable(user: User, needs: Requirement) -> list[MfaFactor]:
    usable = [f for f in factors.for_user(user.id) if f.kind in needs.methods]
    return sorted(usable, key=lambda f: (not f.is_default, f.id))


def decide(user: User, clinic: ClinicPolicy, *, today: date | None = None) -> Decision:
    needs = requirement.of(user, clinic, today=today)
    usable = _usable(user, needs)
    if usable:
        # Whoever has enrolled is always asked, whatever the policy (even when exempt): it is
        # their protection. Only a remembered device or a trusted address stands in.
        if devices.recognised(user, remember_days_for(user, clinic)) is not None:
            return Decision(Next.REMEMBERED, "remembered_device", method="device")
        if locations.recognised(user, needs.same_location_days):
            return Decision(Next.REMEMBERED, "same_location", method="location")
        return Decision(Next.CHALLENGE, "has_factor", method=usable[0].kind, factor=usable[0])
    if bypass.pending(user):
        # An admin let this person in once without a second factor, to set one up again
        # (ADM-6): into the wizard, whatever the policy says, and it cannot be skipped.
        return Decision(Next.SETUP, "one_time_bypass", method="bypass", bypass=True)
    # A factor the policy no longer allows (say SMS was switched off) counts as none.
    if needs.level == MODE_OFF:
        return Decision(Next.SIGNED_IN, f"off_by_{needs.source}", method="none")
    if needs.level == MODE_OPTIONAL:
        return Decision(Next.SETUP, f"optional_by_{needs.source}", skippable=True)
    if needs.required_from is not None:
        return Decision(
            Next.SETUP, "required_later", skippable=True, skip_until=needs.required_from
        )
    return Decision(Next.SETUP, f"required_by_{needs.source}")


def decide_and_claim(user: User, clinic: ClinicPolicy) -> Decision:
    """``decide``, spending the one-time bypass when it chose one. Of sign-ins racing for one
    grant, one spends it; the others are decided again without it, as for anyone without a
    factor under their policy."""
    decision = decide(user, clinic)
    if decision.bypass and not bypass.spend(user):
        decision = decide(user, clinic)
    return decision


def setup_owed(user: User, clinic: ClinicPolicy) -> bool:
    """True when ``user`` has no usable factor and the policy no longer lets them go without
    one: a session they opened without a second factor must now set one up."""
    needs = requirement.of(user, clinic)
    return needs.demanded_now and not _usable(user, needs)
