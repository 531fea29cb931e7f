"""CLI for the IT person (OPS-4): stable command names, passwords by prompt or stdin."""

from __future__ import annotations

import sqlalchemy as sa

from models import AuditEvent, User, db

PW = "a long enough password\n"


def users(app) -> list[User]:
    with app.app_context():
        return list(db.session.scalars(sa.select(User).order_by(User.id)))


def test_create_admin_from_stdin(app, runner):
    result = runner.invoke(
        args=["create-admin", "Boss@Clinic.example", "--name", "Dr Boss", "--password-stdin"],
        input=PW,
    )
    assert result.exit_code == 0, result.output
    [user] = users(app)
    assert user.email == "boss@clinic.example" and user.full_name == "Dr Boss"
    with app.app_context():
        assert db.session.get(User, user.id).role.name == "Administrator"
        assert db.session.scalar(sa.select(AuditEvent.event)) == "user.created"


def test_create_admin_from_prompt_needs_confirmation(app, runner):
    result = runner.invoke(
        args=["create-admin", "boss@clinic.example"],
        input="a long enough password\na long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert len(users(app)) == 1


def test_users_create_with_role_and_phone(app, runner, auth):
    result = runner.invoke(
        args=[
            "users", "create", "reception@clinic.example", "--role", "reception",
            "--name", "Front Desk", "--phone", "0412 345 678", "--password-stdin",
        ],
        input=PW,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [user] = users(app)
    assert user.mobile_number == "+61412345678"
    assert auth.login("reception@clinic.example", PW.strip()).status_code == 303


def test_users_create_refuses_bad_input(app, runner):
    cases = [
        (
            ["users", "create", "not-an-email", "--role", "Reception"],
            PW,
            "An email address must have an @-sign.",
        ),
        (
            ["users", "create", "a@clinic.example", "--role", "Janitor"],
            PW,
            "No role called 'Janitor'. Roles: Administrator, Practitioner, Reception, Location.",
        ),
        (
            ["users", "create", "a@clinic.example", "--role", "Reception", "--phone", "123"],
            PW,
            "That phone number is not valid.",
        ),
        (
            ["users", "create", "a@clinic.example", "--role", "Reception"],
            "short\n",
            "Use at least 12 characters.",
        ),
    ]
    for args, stdin, message in cases:
        result = runner.invoke(args=[*args, "--password-stdin"], input=stdin)
        assert (result.exit_code, result.output) == (1, f"Error: {message}\n")
    assert users(app) == []


def test_duplicate_email_is_refused_case_insensitively(app, runner):
    runner.invoke(args=["create-admin", "boss@clinic.example", "--password-stdin"], input=PW)
    again = runner.invoke(
        args=["create-admin", "BOSS@clinic.example", "--password-stdin"], input=PW
    )
    assert again.exit_code == 1
    assert again.output == "Error: A user with the email boss@clinic.example already exists.\n"
    assert len(users(app)) == 1


def test_users_list(app, runner, make_user):
    make_user("zed@clinic.example", role="Reception")
    make_user("amy@clinic.example", role="Administrator")
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("amy@clinic.example") and "Administrator" in lines[0]
    assert lines[1].startswith("zed@clinic.example") and "never" in lines[1]


def test_bootstrap_creates_one_admin_once(app, runner, auth):
    first = runner.invoke(args=["bootstrap"])
    assert first.exit_code == 0
    password = next(line.split()[-1] for line in first.output.splitlines() if "password:" in line)
    assert auth.login("admin@clinic.example", password).status_code == 303
    second = runner.invoke(args=["bootstrap"])
    assert second.exit_code == 0 and "password" not in second.output
    assert len(users(app)) == 1
