"""What a change to the clinic's settings would do, before it is saved (ADM-5, seed 004).

The proposal is a ClinicPolicy that is never added to the database session; every person is
judged under it with the same functions sign-in uses (services/readiness.py), so the numbers
are what people will meet at their next sign-in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models import ClinicPolicy, User
from models.factors import SMS
from models.policy import MODE_REQUIRED
from services import policy, readiness, requirement
from services.users import UserInputError, normalise_mobile


@dataclass(frozen=True)
class Impact:
    methods_off: tuple[str, ...]  # allowed now, not after
    to_required: bool  # the clinic's mode becomes Required
    sms_on: bool  # SMS becomes allowed
    # Had a usable factor and would have none: they meet the wizard at their next sign-in.
    losing_only_factor: int = 0
    # Have no usable factor now and would have to set one up at their next sign-in.
    not_enrolled: int = 0
    # People who could choose SMS but have no mobile number that can receive a text.
    without_mobile: list[User] = field(default_factory=list)

    @property
    def needs_confirming(self) -> bool:
        return bool(self.methods_off or self.to_required or self.sms_on)


def preview(clinic: ClinicPolicy, values: dict[str, Any]) -> Impact:
    """The impact of setting ``values`` (from ``policy.validated``) on ``clinic``."""
    proposal = ClinicPolicy(**{**policy.snapshot(clinic), **values})
    methods_off = tuple(m for m in clinic.methods if m not in proposal.methods)
    to_required = clinic.mode != MODE_REQUIRED and proposal.mode == MODE_REQUIRED
    sms_on = SMS in proposal.methods and SMS not in clinic.methods
    if not (methods_off or to_required or sms_on):
        return Impact(methods_off, to_required, sms_on)
    losing = not_enrolled = 0
    without_mobile = []
    for person in readiness.people():
        usable_now = person.usable(clinic)
        after = requirement.of(person.user, proposal)
        if not person.kinds & frozenset(after.methods):
            if usable_now and after.level != "off":
                losing += 1
            elif not usable_now and after.demanded_now:
                not_enrolled += 1
        may_text = sms_on and SMS in after.methods
        if may_text and not can_receive_texts(person.user.mobile_number):
            without_mobile.append(person.user)
    return Impact(methods_off, to_required, sms_on, losing, not_enrolled, without_mobile)


def can_receive_texts(number: str | None) -> bool:
    if not number:
        return False
    try:
        normalise_mobile(number)
    except UserInputError:
        return False
    return True
