"""API users as accounts (ADM-10, seed 003): no usable password, refused at the sign-in page
exactly like a wrong password (same words, same hash cost, counted, audited apart), never a
person to enrol (readiness, the impact preview, rollout notices), no password reset or
password set; and the command line for API users and tokens."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine

from blueprints.auth import views as sign_in_views
from blueprints.auth.views import GENERIC_ERROR
from models import ApiToken, AuditEvent, Role, SignInThrottle, User, UserSession, db
from services import api_access, impact, policy, readiness, rollout_notices, throttle
from tests.conftest import PASSWORD

NURSE = "nurse@clinic.example"
REPORT = "monthly-report@api.invalid"


def an_api_user(app, name: str = "Monthly report", role: str = "Reporting") -> int:
    with app.app_context():
        user = api_access.create_user(name, role)
        db.session.commit()
        return user.id


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEvent).where(AuditEvent.event == name)))


def comparable(response) -> str:
    body = response.get_data(as_text=True).replace(REPORT, "X").replace(NURSE, "X")
    return re.sub(r'value="[^"]{40,}"|content="[^"]{40,}"', "", body)


def test_an_api_user_cannot_sign_in_and_it_looks_like_a_wrong_password(app, auth, make_user):
    make_user(NURSE)
    api_id = an_api_user(app)
    wrong = auth.login(NURSE, password="not the password at all")
    tries = [
        auth.login(REPORT, password=PASSWORD),
        auth.login(REPORT, password=api_access.UNUSABLE_PASSWORD),
    ]
    for refused in tries:
        assert refused.status_code == 422
        assert GENERIC_ERROR in refused.get_data(as_text=True)
        assert comparable(refused) == comparable(wrong)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(UserSession.id))) == 0
        failures = db.session.scalar(
            sa.select(SignInThrottle.failures).where(
                SignInThrottle.key == throttle.email_key(REPORT)
            )
        )
    assert failures == 2  # counted like wrong passwords
    refusals = events(app, "sign_in.refused_api_user")
    assert [e.subject_id for e in refusals] == [api_id, api_id]
    assert [e.subject_id for e in events(app, "sign_in.password_failed")] != [api_id]


def test_an_api_user_is_refused_even_with_a_real_password_hash(app, auth, password_hash):
    """The kind decides, not the hash: were a usable hash ever written to an API user (a
    restored backup, a bug), the right password still opens nothing."""
    api_id = an_api_user(app)
    with app.app_context():
        db.session.get(User, api_id).password_hash = password_hash
        db.session.commit()
    refused = auth.login(REPORT, password=PASSWORD)
    assert refused.status_code == 422
    assert GENERIC_ERROR in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(UserSession.id))) == 0


def test_the_api_user_path_costs_one_dummy_hash_like_an_unknown_address(
    app, auth, make_user, monkeypatch
):
    """Same timing path: the password is verified once, against no stored hash (so against
    the dummy one at the same argon2 cost), exactly as for an address nobody has."""
    an_api_user(app)
    calls: list[tuple[str | None, str]] = []
    real = sign_in_views.verify_password

    def spy(stored: str | None, password: str) -> bool:
        calls.append((stored, password))
        return real(stored, password)

    monkeypatch.setattr(sign_in_views, "verify_password", spy)
    auth.login("nobody@clinic.example", password="a guess at it")
    auth.login(REPORT, password="a guess at it")
    assert calls == [(None, "a guess at it"), (None, "a guess at it")]


def test_api_users_are_exempt_and_no_person_to_enrol(app, make_user, runner):
    """Readiness counts, the impact of making it required and the role counts leave them
    out; asked for their standing (the API, the users list), they are exempt."""
    make_user(NURSE)
    an_api_user(app, role="Practitioner")
    an_api_user(app, "Audit export")  # the Reporting role, made for it
    with app.app_context():
        clinic = policy.current()
        assert [p.user.email for p in readiness.people()] == [NURSE]
        practitioners = db.session.scalar(sa.select(Role.id).where(Role.name == "Practitioner"))
        assert readiness.by_role(clinic)[practitioners] == {"not_enrolled": 1}
        api_user = db.session.scalar(sa.select(User).where(User.email == REPORT))
        [person] = readiness.people_of([api_user])
        assert readiness.standing(person, clinic) == readiness.EXEMPT
        effect = impact.preview(clinic, policy.validated(mode="required"))
        assert effect.not_enrolled == 1
    # The Reporting role holds API users alone: nobody to roll out to, so it is not listed.
    shown = runner.invoke(args=["rollout", "show"]).output
    assert [line.split()[0] for line in shown.splitlines()[1:]] == [
        "Administrator",
        "Practitioner",
        "Reception",
        "Location",
    ]
    assert re.search(r"Practitioner .* 0 enrolled, 1 not enrolled, 0 exempt", shown)


def test_no_rollout_notice_for_an_api_user(app, make_user, mailbox):
    make_user(NURSE)
    an_api_user(app, role="Practitioner")
    with app.app_context():
        role = db.session.scalar(sa.select(Role).where(Role.name == "Practitioner"))
        role.mfa_mode, role.mfa_required_from = "required", date(2027, 2, 1)
        db.session.commit()
    morning = datetime.combine(date(2027, 1, 18), time(9), tzinfo=ZoneInfo("UTC"))
    with time_machine.travel(morning, tick=False), app.app_context():
        assert [d.user.email for d in rollout_notices.due((14, 1))] == [NURSE]


def test_no_password_reset_for_an_api_user(app, auth, mailbox):
    an_api_user(app)
    response = auth.post("/forgot-password", {"email": REPORT})
    response.get_data()
    response.close()
    assert response.status_code == 200
    assert mailbox.to(REPORT) == []
    assert [e.details["reason"] for e in events(app, "password_reset.refused")] == ["api_user"]


def test_an_api_user_cannot_be_given_a_password(app, runner):
    an_api_user(app)
    result = runner.invoke(
        args=["users", "set-password", REPORT, "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 1
    assert "API users have no password: they read the API with tokens." in result.output
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == REPORT))
        assert user.password_hash == api_access.UNUSABLE_PASSWORD


# --- the command line --------------------------------------------------------------------


def test_cli_api_users_create(app, runner):
    result = runner.invoke(args=["api-users", "create", "Monthly report"])
    assert result.exit_code == 0, result.output
    assert result.output == "Created API user 'Monthly report' (Reporting).\n"
    other = runner.invoke(args=["api-users", "create", "Audit export", "--role", "location"])
    assert other.output == "Created API user 'Audit export' (Location).\n"
    with app.app_context():
        rows = db.session.execute(
            sa.select(User.email, User.kind, User.password_hash).order_by(User.id)
        ).all()
        assert rows == [
            (REPORT, "api", api_access.UNUSABLE_PASSWORD),
            ("audit-export@api.invalid", "api", api_access.UNUSABLE_PASSWORD),
        ]
    assert [e.details for e in events(app, "admin.api_user_created")] == [
        {"name": "Monthly report", "role": "Reporting", "via": "cli"},
        {"name": "Audit export", "role": "Location", "via": "cli"},
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Monthly Report"], "Error: An API user with that name already exists."),
        (["Boss", "--role", "Administrator"], "Error: An API user cannot be an Administrator."),
        (
            ["Boss", "--role", "Janitor"],
            "Error: No role called 'Janitor'. Roles: Reporting, Practitioner, Reception, Location.",
        ),
        (["..."], "Error: Use letters or digits in the name, e.g. Monthly report."),
    ],
)
def test_cli_api_users_create_refuses_bad_input(app, runner, args, message):
    an_api_user(app)
    result = runner.invoke(args=["api-users", "create", *args])
    assert result.exit_code == 1
    assert message in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(User.id))) == 1


def test_cli_api_tokens_create_prints_the_secret_alone_on_stdout(app, runner, client):
    an_api_user(app)
    result = runner.invoke(
        args=["api-tokens", "create", "monthly report", "--label", "Power BI", "--days", "30"]
    )
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"cmfa_[A-Za-z0-9_-]{43}\n", result.stdout)
    assert re.fullmatch(
        r"Token 1 for 'Monthly report', valid until \d+ \w+ \d{4}\. "
        r"Copy it now: it is not shown again\.\n",
        result.stderr,
    )
    secret = result.stdout.strip()
    assert (
        client.get("/api/v1/users", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 200
    )
    [created] = events(app, "admin.api_token_created")
    assert created.details["via"] == "cli" and secret not in str(created.details)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Nobody", "--label", "x"], "Error: No API user called 'Nobody'."),
        (["Monthly report", "--label", "x", "--days", "366"], "Error: Choose from 1 to 365 days."),
        (["Monthly report", "--label", "  "], "Error: Enter a label"),
        (["nurse", "--label", "x"], "Error: No API user called 'nurse'."),
    ],
)
def test_cli_api_tokens_create_refuses_bad_input(app, runner, make_user, args, message):
    make_user(NURSE, full_name="nurse")
    an_api_user(app)
    result = runner.invoke(args=["api-tokens", "create", *args])
    assert result.exit_code == 1
    assert message in result.output
    assert "cmfa_" not in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(ApiToken.id))) == 0


def test_cli_api_tokens_list_and_revoke(app, runner, client):
    an_api_user(app)
    assert runner.invoke(args=["api-tokens", "list"]).output == "No API tokens yet.\n"
    secret = runner.invoke(
        args=["api-tokens", "create", "Monthly report", "--label", "Power BI"]
    ).stdout.strip()
    client.get("/api/v1/users", headers={"Authorization": f"Bearer {secret}"})
    listed = runner.invoke(args=["api-tokens", "list"]).output
    assert re.fullmatch(
        r"   1  Monthly report            Power BI                  active   expires "
        r"\d{4}-\d\d-\d\d  last used \d{4}-\d\d-\d\d \d\d:\d\d UTC from 127\.0\.0\.1\n",
        listed,
    ), listed
    revoked = runner.invoke(args=["api-tokens", "revoke", "1"])
    assert revoked.exit_code == 0
    assert revoked.output == "Token 1 ('Power BI') of 'Monthly report' revoked.\n"
    again = runner.invoke(args=["api-tokens", "revoke", "1"])
    assert again.output == "Token 1 ('Power BI') of 'Monthly report' was already revoked.\n"
    assert " revoked " in runner.invoke(args=["api-tokens", "list"]).output
    unknown = runner.invoke(args=["api-tokens", "revoke", "7"])
    assert unknown.exit_code == 1 and "Error: No API token with the id 7." in unknown.output
    assert (
        client.get("/api/v1/users", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )
    [event] = events(app, "admin.api_token_revoked")
    assert event.details == {"token_id": 1, "label": "Power BI", "via": "cli"}


def test_tokens_default_to_90_days(app, runner):
    an_api_user(app)
    now = datetime(2026, 11, 23, 12, tzinfo=ZoneInfo("UTC"))
    with time_machine.travel(now, tick=False):
        runner.invoke(args=["api-tokens", "create", "Monthly report", "--label", "x"])
    with app.app_context():
        assert db.session.scalar(sa.select(ApiToken.expires_at)) == now + timedelta(days=90)
