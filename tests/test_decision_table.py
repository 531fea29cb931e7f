"""What follows the password (AUTH-4) for every combination of the clinic's mode (ADM-2), the
role's rollout with a go-live date (ADM-3), the person's override (ADM-4), their factors and
whether they are an Administrator; then the go-live date end to end, by HTTP, across the
clinic's midnight (MFA_TIME_ZONE) on the days daylight saving starts and ends.

The expected answer comes from ``expected`` below, the rules written out again on their own,
not from services/requirement.py: break a rule there and a row here fails.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask

from models import AuditEvent, ClinicPolicy, MfaFactor, Role, User, db
from services import policy
from services.signin import Next, decide
from tests.conftest import AuthActions, make_app, reset_database

GO_LIVE = date(2027, 2, 1)
# The role's policy (Role.mfa_mode, Role.mfa_required_from) in each column of the table.
ROLE_POLICIES = {
    "default": ("default", None),
    "off": ("off", None),
    "optional": ("optional", None),
    "required": ("required", None),
    "required_from": ("required", GO_LIVE),
}
DAYS = {"eve": GO_LIVE - timedelta(days=1), "go_live": GO_LIVE}
CLINIC_MODES = ("off", "optional", "required")
OVERRIDES = ("default", "required", "exempt")
# What the person has set up: nothing, an authenticator app, or only email codes.
ENROLMENTS = ("none", "totp", "email")
WHO = ("staff", "admin")


@dataclass(frozen=True)
class Case:
    clinic: str
    role: str
    day: str
    override: str
    enrolled: str
    who: str

    def __str__(self) -> str:
        return "-".join((self.clinic, self.role, self.day, self.override, self.enrolled, self.who))


CASES = [
    Case(*values)
    for values in itertools.product(CLINIC_MODES, ROLE_POLICIES, DAYS, OVERRIDES, ENROLMENTS, WHO)
]


@dataclass(frozen=True)
class Expected:
    next: Next
    skippable: bool = False
    skip_until: date | None = None
    method: str | None = None  # the factor asked for, for a challenge


def expected(case: Case) -> Expected:
    """The rules, stated once more without the app's code."""
    # Administrators may use only an authenticator app (the clinic's default): an email
    # factor is no factor for them.
    usable = case.enrolled == "totp" or (case.enrolled == "email" and case.who == "staff")
    if usable:
        # Whoever has a factor is asked for it, even when exempt: it protects them.
        return Expected(Next.CHALLENGE, method=case.enrolled)
    if case.override == "exempt":
        level = "off"
    elif case.override == "required":
        level = "required"
    elif case.role == "default":
        level = case.clinic
    else:
        level = ROLE_POLICIES[case.role][0]
    if level == "off":
        return Expected(Next.SIGNED_IN)
    if level == "optional":
        return Expected(Next.SETUP, skippable=True)
    # Only the role's own go-live date postpones setup, and only before that day.
    if case.override == "default" and case.role == "required_from" and case.day == "eve":
        return Expected(Next.SETUP, skippable=True, skip_until=GO_LIVE)
    return Expected(Next.SETUP)


@pytest.fixture(scope="module")
def population(database_url: str, password_hash: str) -> Iterator[tuple[Flask, dict]]:
    """One app and one user per (who, override, enrolled) for the whole table, built once per
    database; each row then sets the clinic's mode and the roles' policy, and rolls back."""
    app = make_app(database_url)
    users: dict[tuple[str, str, str], int] = {}
    with app.app_context():
        reset_database()
        clinic = policy.current()
        clinic.allowed_methods = "totp,email"
        roles = {
            "staff": db.session.scalar(sa.select(Role).where(Role.name == "Practitioner")),
            "admin": db.session.scalar(sa.select(Role).where(Role.name == "Administrator")),
        }
        for who, override, enrolled in itertools.product(WHO, OVERRIDES, ENROLMENTS):
            user = User(
                email=f"{who}-{override}-{enrolled}@clinic.example",
                password_hash=password_hash,
                role=roles[who],
                mfa_override=override,
            )
            db.session.add(user)
            db.session.flush()
            if enrolled == "totp":
                db.session.add(MfaFactor(user_id=user.id, kind="totp", secret_encrypted="unread"))
            elif enrolled == "email":
                db.session.add(MfaFactor(user_id=user.id, kind="email", target=user.email))
            users[who, override, enrolled] = user.id
        db.session.commit()
    yield app, users
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_decision_table(population, case: Case):
    app, users = population
    with app.test_request_context("/sign-in", method="POST"):
        user = db.session.get(User, users[case.who, case.override, case.enrolled])
        assert user is not None and user.email.startswith(f"{case.who}-{case.override}-")
        clinic = db.session.get(ClinicPolicy, 1)
        clinic.mode = case.clinic
        user.role.mfa_mode, user.role.mfa_required_from = ROLE_POLICIES[case.role]
        decision = decide(user, clinic, today=DAYS[case.day])
        db.session.rollback()
    got = Expected(
        decision.next,
        decision.skippable,
        decision.skip_until,
        decision.method if decision.next is Next.CHALLENGE else None,
    )
    assert got == expected(case)


def test_admins_may_use_email_where_the_clinic_allows_it(population):
    """The one exception to the Administrators' column: admins_app_only switched off."""
    app, users = population
    with app.test_request_context("/sign-in", method="POST"):
        admin = db.session.get(User, users["admin", "default", "email"])
        clinic = db.session.get(ClinicPolicy, 1)
        clinic.mode, clinic.admins_app_only = "required", False
        decision = decide(admin, clinic, today=GO_LIVE)
        db.session.rollback()
    assert (decision.next, decision.method) == (Next.CHALLENGE, "email")


# Go-live on the days daylight saving starts (02:00; midnight is still UTC+10) and ends
# (03:00; midnight is still UTC+11) in Sydney: at the clinic's midnight UTC is a day behind.
SYDNEY = ZoneInfo("Australia/Sydney")
DST_GO_LIVE = {
    "dst_starts": (date(2026, 10, 4), "4 October 2026"),
    "dst_ends": (date(2027, 4, 4), "4 April 2027"),
}


@dataclass(frozen=True)
class Rollout:
    go_live: date
    shown: str  # the date as the skip button says it

    def local(self, days: int, hour: int, minute: int, second: int = 0) -> datetime:
        """A moment on the clinic's clock, ``days`` after the go-live day."""
        day = self.go_live + timedelta(days=days)
        return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=SYDNEY)

    @property
    def just_after_midnight(self) -> datetime:
        moment = self.local(0, 0, 0, 30)
        assert moment.astimezone(UTC).date() == self.go_live - timedelta(days=1)
        return moment


@pytest.fixture(params=list(DST_GO_LIVE.values()), ids=list(DST_GO_LIVE))
def rollout(request, app, make_user) -> Rollout:
    """The clinic's mode is off; Practitioners must enrol from the go-live day in Sydney."""
    go_live, shown = request.param
    app.config["MFA_TIME_ZONE"] = "Australia/Sydney"
    with app.app_context():
        role = db.session.scalar(sa.select(Role).where(Role.name == "Practitioner"))
        role.mfa_mode, role.mfa_required_from = "required", go_live
        db.session.commit()
    make_user()
    return Rollout(go_live, shown)


def events(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEvent.event).order_by(AuditEvent.id)))


def assert_setup_cannot_be_skipped(client, auth: AuthActions) -> None:
    page = client.get("/mfa/setup").get_data(as_text=True)
    assert "Set up two-step sign-in" in page
    assert "Skip for now" not in page and "t use multi-factor authentication" not in page
    assert auth.post("/mfa/setup/decline", page="/mfa/setup").status_code == 403
    assert client.get("/").headers["Location"] == "/mfa/setup"


def test_the_evening_before_setup_may_be_skipped(app, client, auth, rollout):
    with time_machine.travel(rollout.local(-1, 23, 59), tick=False):
        assert auth.login().headers["Location"] == "/mfa/setup"
        page = client.get("/mfa/setup").get_data(as_text=True)
        assert f"Skip for now: required from {rollout.shown}" in page
        skipped = auth.post("/mfa/setup/decline", page="/mfa/setup")
        assert skipped.status_code == 303 and skipped.headers["Location"] == "/"
        assert client.get("/").status_code == 200
    assert "mfa.setup_postponed" in events(app)


def test_from_the_clinics_midnight_setup_is_required(app, client, auth, rollout):
    with time_machine.travel(rollout.just_after_midnight, tick=False):
        assert auth.login().headers["Location"] == "/mfa/setup"
        assert_setup_cannot_be_skipped(client, auth)
    assert "mfa.setup_postponed" not in events(app)


def test_a_session_that_skipped_owes_setup_from_the_day(app, client, auth, rollout):
    with time_machine.travel(rollout.local(-1, 23, 55), tick=False) as clock:
        auth.login()
        auth.post("/mfa/setup/decline", page="/mfa/setup")
        assert client.get("/").status_code == 200
        clock.move_to(rollout.just_after_midnight)
        assert client.get("/").headers["Location"] == "/mfa/setup"
        assert_setup_cannot_be_skipped(client, auth)
    assert "sign_in.setup_now_required" in events(app)


def test_a_sign_in_pending_across_midnight_loses_its_skip(app, client, auth, rollout):
    with time_machine.travel(rollout.local(-1, 23, 58, 30), tick=False) as clock:
        auth.login()
        assert "Skip for now" in client.get("/mfa/setup").get_data(as_text=True)
        clock.move_to(rollout.just_after_midnight)
        assert_setup_cannot_be_skipped(client, auth)
