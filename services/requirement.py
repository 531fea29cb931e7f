"""The effective policy for one person: the clinic's settings, their role's rollout, their
own override and the date, read together in one place (ADM-2, ADM-3, ADM-4, DEV-3).

``signin.decide`` asks this what is demanded and picks the next step; the admin pages, the
rollout notices and the readiness counts ask it too, so they can never disagree with sign-in.

The order, strongest first:

1. the person's override: Exempt (never demanded) or Required (demanded now);
2. their role's policy, if it is not "clinic default": off, optional or required, and a
   required role with a go-live date still ahead may be skipped until that day;
3. the clinic's mode.

"Administrators only" is no special case: the Administrator role set to required while the
clinic's mode is off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from models import ClinicPolicy, User
from models.policy import MODE_OFF, MODE_OPTIONAL, MODE_REQUIRED
from models.user import OVERRIDE_EXEMPT, OVERRIDE_REQUIRED, ROLE_DEFAULT
from services import localtime
from services.policy import methods_for

# Where the rule that applies came from: for the audit log and for what a page says.
FROM_OVERRIDE = "override"
FROM_ROLE = "role"
FROM_CLINIC = "clinic"


@dataclass(frozen=True)
class Requirement:
    # "off": never demanded; "optional": offered, may be declined; "required": demanded.
    level: str
    source: str
    # The methods this person may enrol and use.
    methods: tuple[str, ...]
    # For a required role whose go-live date is still ahead: that date. Until then setup
    # may be skipped ("Skip for now: required from ...").
    required_from: date | None = None
    # Days a passed second factor lets this person skip the prompt from the same address;
    # 0 when the rule does not apply to them (DEV-3: never for Administrators).
    same_location_days: int = 0

    @property
    def demanded_now(self) -> bool:
        """A person without a factor must enrol before anything else."""
        return self.level == MODE_REQUIRED and self.required_from is None

    @property
    def skippable(self) -> bool:
        """Setup is offered but may be declined (optional) or postponed (a date ahead)."""
        return self.level == MODE_OPTIONAL or (
            self.level == MODE_REQUIRED and self.required_from is not None
        )


def of(user: User, clinic: ClinicPolicy, *, today: date | None = None) -> Requirement:
    """What the policy asks of ``user`` on ``today`` (the clinic's day; now by default)."""
    methods = methods_for(user, clinic)
    days = _same_location_days(user, clinic)
    if user.mfa_override == OVERRIDE_EXEMPT:
        return Requirement(MODE_OFF, FROM_OVERRIDE, methods, same_location_days=days)
    if user.mfa_override == OVERRIDE_REQUIRED:
        return Requirement(MODE_REQUIRED, FROM_OVERRIDE, methods, same_location_days=days)
    role = user.role
    if role.mfa_mode == ROLE_DEFAULT:
        return Requirement(clinic.mode, FROM_CLINIC, methods, same_location_days=days)
    go_live = role.mfa_required_from if role.mfa_mode == MODE_REQUIRED else None
    if go_live is not None and (today or localtime.today()) >= go_live:
        go_live = None  # the day has come
    return Requirement(role.mfa_mode, FROM_ROLE, methods, go_live, days)


def _same_location_days(user: User, clinic: ClinicPolicy) -> int:
    if user.is_admin:
        return 0
    wanted = clinic.same_location if user.same_location is None else user.same_location
    return clinic.same_location_days if wanted else 0
