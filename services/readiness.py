"""Who is ready for two-step sign-in (ADM-3, ADM-5, ADM-8): each active person's standing
under the effective policy, counted per role for the admin pages and the impact preview.

Two queries whatever the number of people: the users with their roles, and every factor's
(user, kind). The rest is ``requirement.of`` per person, so the counts agree with sign-in.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, false, or_, select

from models import ClinicPolicy, MfaFactor, Role, User, db
from models.factors import TOTP
from models.user import ADMINISTRATOR, OVERRIDE_EXEMPT
from services import requirement
from services.policy import METHOD_LABELS

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
    """Every active person with the kinds of factor they have; API users are no people."""
    users = db.session.scalars(
        select(User).where(User.active.is_(True), User.is_person).order_by(User.id)
    ).all()
    return people_of(users, everyone=True)


def people_of(users: Sequence[User], *, everyone: bool = False) -> list[Person]:
    """``users`` with the kinds of factor they have: one query, whatever their number (a page
    of the users list asks for its own; ``everyone`` reads all factors without a long IN)."""
    if not users:
        return []
    query = select(MfaFactor.user_id, MfaFactor.kind)
    if not everyone:
        query = query.where(MfaFactor.user_id.in_([u.id for u in users]))
    kinds: defaultdict[int, set[str]] = defaultdict(set)
    for user_id, kind in db.session.execute(query):
        kinds[user_id].add(kind)
    return [Person(user, frozenset(kinds[user.id])) for user in users]


def has_usable_factor(clinic: ClinicPolicy) -> ColumnElement[bool]:
    """The SQL twin of ``Person.usable``, for filtering and counting in the database: the
    user row of the enclosing query has a factor the policy lets them use (the clinic's
    methods; only the app for Administrators while admins_app_only). A test holds the two to
    the same answer for every kind of person."""
    methods = [m for m in clinic.methods if m in METHOD_LABELS]
    if not methods:
        return false()
    allowed = MfaFactor.kind.in_(methods)
    if clinic.admins_app_only:
        admins = select(Role.id).where(Role.name == ADMINISTRATOR).scalar_subquery()
        allowed = and_(allowed, or_(MfaFactor.kind == TOTP, User.role_id != admins))
    return exists().where(MfaFactor.user_id == User.id, allowed)


def standing_is(standing: str, clinic: ClinicPolicy) -> ColumnElement[bool]:
    """SQL for ``standing(person, clinic) == standing``."""
    usable = and_(User.is_person, has_usable_factor(clinic))
    if standing == ENROLLED:
        return usable
    exempt = or_(~User.is_person, User.mfa_override == OVERRIDE_EXEMPT)
    if standing == EXEMPT:
        return and_(~usable, exempt)
    return and_(~usable, ~exempt)


def standing(person: Person, clinic: ClinicPolicy) -> str:
    """Enrolled: has a factor the policy lets them use. Exempt: an admin excused them (and
    they have no usable factor), or an API user, never asked for a second factor. Otherwise
    not enrolled."""
    if not person.user.is_person:
        return EXEMPT
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
