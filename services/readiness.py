"""Who is ready for two-step sign-in (ADM-3, ADM-5, ADM-8): each active person's standing
under the effective policy, counted per role for the admin pages and the impact preview.

Two queries whatever the number of people: the users with their roles, and every factor's
(user, kind). The rest is ``requirement.of`` per person, so the counts agree with sign-in.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import select

from models import ClinicPolicy, MfaFactor, User, db
from models.user import OVERRIDE_EXEMPT
from services import requirement

ENROLLED = "enrolled"
NOT_ENROLLED = "not_enrolled"
EXEMPT = "exempt"
STANDINGS = (ENROLLED, NOT_ENROLLED, EXEMPT)


@dataclass(frozen=True)
class Person:
    user: User
    kinds: frozenset[str]  # every kind of factor they have, allowed or not

    def usable(self, clinic: ClinicPolicy) -> frozenset[str]:
        return self.kinds & frozenset(requirement.of(self.user, clinic).methods)


def people() -> list[Person]:
    """Every active person with the kinds of factor they have."""
    users = db.session.scalars(select(User).where(User.active.is_(True)).order_by(User.id)).all()
    kinds: defaultdict[int, set[str]] = defaultdict(set)
    for user_id, kind in db.session.execute(select(MfaFactor.user_id, MfaFactor.kind)):
        kinds[user_id].add(kind)
    return [Person(user, frozenset(kinds[user.id])) for user in users]


def standing(person: Person, clinic: ClinicPolicy) -> str:
    """Enrolled: has a factor the policy lets them use. Exempt: an admin excused them (and
    they have no usable factor). Otherwise not enrolled."""
    if person.usable(clinic):
        return ENROLLED
    if person.user.mfa_override == OVERRIDE_EXEMPT:
        return EXEMPT
    return NOT_ENROLLED


def by_role(clinic: ClinicPolicy, everyone: list[Person] | None = None) -> dict[int, Counter[str]]:
    """{role id: Counter(standing)} for every role that has active people."""
    counts: defaultdict[int, Counter[str]] = defaultdict(Counter)
    for person in people() if everyone is None else everyone:
        counts[person.user.role_id][standing(person, clinic)] += 1
    return dict(counts)
