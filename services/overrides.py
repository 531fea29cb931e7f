"""One person's exceptions to the clinic's rule (ADM-4, DEV-3; seeds 002 and 003)."""

from __future__ import annotations

from models import User
from models.user import OVERRIDES
from services import locations
from services.policy import Change, PolicyError

OVERRIDE_LABELS = {
    "default": "Clinic default",
    "required": "Required",
    "exempt": "Exempt",
}
# The per-person "prompt only once from the same location" choice; None follows the clinic.
SAME_LOCATION_CHOICES = {"default": None, "on": True, "off": False}
SAME_LOCATION_LABELS = {
    "default": "Clinic setting",
    "on": "On for this person",
    "off": "Off for this person",
}


def same_location_choice(user: User) -> str:
    return next(k for k, v in SAME_LOCATION_CHOICES.items() if v is user.same_location)


def set_for(user: User, *, override: str, same_location: str) -> Change:
    """Set ``user``'s override and same-location choice. Switching the rule off for them
    forgets the addresses it had trusted."""
    if override not in OVERRIDES:
        raise PolicyError(f"Choose one of {', '.join(OVERRIDES)}.", "override")
    if same_location not in SAME_LOCATION_CHOICES:
        raise PolicyError(f"Choose one of {', '.join(SAME_LOCATION_CHOICES)}.", "same_location")
    before = {"override": user.mfa_override, "same_location": same_location_choice(user)}
    user.mfa_override = override
    user.same_location = SAME_LOCATION_CHOICES[same_location]
    after = {"override": override, "same_location": same_location}
    if user.same_location is False and before["same_location"] != "off":
        locations.forget_all(user.id)
    return Change.between(before, after)
