"""Before go-live (ADM-8, seed 001): what the readiness page shows besides shared profiles
(services/shared_profiles.py): each role's counts, and the people whose contact details
would stop them setting up.

The counts are ``readiness.by_role``, the rule is ``requirement.of``: the same functions
sign-in and the settings page use, so the numbers agree with what people meet.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import select, union

from models import AuditEvent, ClinicPolicy, Role, User, UserSession, db
from models.factors import EMAIL, SMS
from models.policy import MODE_OFF
from services import readiness, requirement, rollout
from services.impact import can_receive_texts

# Events that show a person received mail at their address or signed in with it.
EMAIL_PROOF_EVENTS = ("sign_in.succeeded", "password_reset.completed")


@dataclass(frozen=True)
class RoleReadiness:
    role: Role
    counts: Counter[str]  # standing -> people (readiness.STANDINGS)


def roles(clinic: ClinicPolicy, everyone: list[readiness.Person]) -> list[RoleReadiness]:
    """Every role with its active people by standing (zeros for a role nobody is in)."""
    counts = readiness.by_role(clinic, everyone)
    return [RoleReadiness(role, counts.get(role.id, Counter())) for role in rollout.roles()]


@dataclass(frozen=True)
class Gap:
    """A person whose contact details need fixing, with their standing for the priority."""

    user: User
    standing: str


def without_mobile(clinic: ClinicPolicy, everyone: list[readiness.Person]) -> list[Gap]:
    """People who will be asked for two-step sign-in and may choose SMS, but have no mobile
    number that can receive a text (seed 001: "ensure your correct mobile number is assigned
    to your profile"). Empty when SMS is not allowed."""
    gaps = []
    for person in everyone:
        needs = requirement.of(person.user, clinic)
        if needs.level == MODE_OFF or SMS not in needs.methods:
            continue
        if not can_receive_texts(person.user.mobile_number):
            gaps.append(Gap(person.user, readiness.standing(person, clinic)))
    return gaps


def email_unconfirmed(clinic: ClinicPolicy, everyone: list[readiness.Person]) -> list[Gap]:
    """People with nothing to show their email address is theirs and reaches them: no emailed
    code set up, never signed in (no session, no sign-in in the audit log) and no password
    reset completed through an emailed link. Today's data has no other proof; an address
    typed wrong, or a profile nobody uses, shows up here before rollout notices bounce."""
    candidates = {p.user.id: p for p in everyone if EMAIL not in p.kinds}
    if not candidates:
        return []
    ids = list(candidates)
    used = select(UserSession.user_id).where(
        UserSession.user_id.in_(ids), UserSession.signed_in_at.is_not(None)
    )
    proved = select(AuditEvent.subject_id).where(
        AuditEvent.subject_id.in_(ids), AuditEvent.event.in_(EMAIL_PROOF_EVENTS)
    )
    confirmed = set(db.session.scalars(union(used, proved)))
    left = [i for i in ids if i not in confirmed]
    return [
        Gap(candidates[i].user, readiness.standing(candidates[i], clinic))
        for i in sorted(left, key=lambda i: candidates[i].user.email)
    ]
