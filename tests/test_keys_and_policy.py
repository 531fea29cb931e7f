"""Key rotation (FAC-7) and the policy command (`flask policy ...`)."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from models import AuditEvent, ClinicPolicy, MfaFactor, db
from tests.conftest import AuthActions, make_app

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


def test_key_file_is_generated_private_and_rotated_without_lockout(
    database_url, app, tmp_path, password_hash
):
    """Two workers share a key file; one rotates; both still verify codes, old and new."""
    keys = tmp_path / "mfa_keys.json"
    extra = {"MFA_ENCRYPTION_KEYS": None, "MFA_HASH_KEY": None, "MFA_KEYS_FILE": str(keys)}
    worker_a = make_app(database_url, **extra)
    worker_b = make_app(database_url, **extra)
    from models import Role, User
    from services import crypto, policy

    secret = pyotp.random_base32(32)
    with worker_a.app_context():
        policy.update(mode="required")
        role = db.session.scalar(sa.select(Role).where(Role.name == "Practitioner"))
        user = User(email="nurse@clinic.example", password_hash=password_hash, role=role)
        db.session.add(user)
        db.session.flush()
        db.session.add(
            MfaFactor(
                user_id=user.id,
                kind="totp",
                is_default=True,
                secret_encrypted=crypto.encrypt(secret),
            )
        )
        db.session.commit()
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    first_key = json.loads(keys.read_text())["encryption_keys"][0]

    with worker_b.app_context():
        assert crypto.keyring().keys == (first_key,)  # B holds the old key in memory

    runner = worker_a.test_cli_runner()
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "1 secrets re-encrypted" in result.output
    data = json.loads(keys.read_text())
    assert len(data["encryption_keys"]) == 2 and data["encryption_keys"][1] == first_key

    # Worker B loaded the old key before the rotation; it notices the new file.
    with time_machine.travel(T0, tick=False):
        browser = AuthActions(worker_b.test_client())
        browser.login()
        assert browser.verify_totp(pyotp.TOTP(secret).at(T0)).headers["Location"] == "/"

    result = runner.invoke(args=["keys", "rotate", "--retire-old"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(keys.read_text())["encryption_keys"]) == 1
    with time_machine.travel(T0.replace(minute=1), tick=False):
        browser = AuthActions(worker_a.test_client())
        browser.login()
        code = pyotp.TOTP(secret).at(T0.replace(minute=1))
        assert browser.verify_totp(code).headers["Location"] == "/"
    with worker_a.app_context():
        assert (
            db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.event == "keys.rotated"))
            == 2
        )
    for worker in (worker_a, worker_b):
        with worker.app_context():
            db.engine.dispose()


def test_rotate_refuses_when_keys_come_from_the_environment(runner):
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: Keys come from MFA_ENCRYPTION_KEYS. Put a new key first in that list (make one "
        "with `flask --app app keys generate`), restart, then run "
        "`flask --app app keys reencrypt`.\n"
    )


def test_policy_set_and_show(app, runner):
    result = runner.invoke(
        args=[
            "policy", "set", "--mode", "required", "--methods", "totp",
            "--remember-days", "30", "--support-contact", "IT: Sam, 0400 000 000",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = runner.invoke(args=["policy", "show"]).output
    assert "mode:            required" in shown and "remember-days:   30" in shown
    assert "IT: Sam, 0400 000 000" in shown
    with app.app_context():
        p = db.session.get(ClinicPolicy, 1)
        assert (p.mode, p.allowed_methods, p.remember_days) == ("required", "totp", 30)
        assert db.session.scalar(sa.select(AuditEvent.event)) == "policy.changed"


def test_policy_defaults_are_off(runner):
    shown = runner.invoke(args=["policy", "show"]).output
    assert "mode:            off" in shown and "methods:         totp" in shown


def test_policy_set_refuses_bad_values(app, runner):
    for args, code, error in (
        (
            ["--mode", "sometimes"],
            2,  # click's usage error
            "Invalid value for '--mode': 'sometimes' is not one of 'off', 'optional', 'required'.",
        ),
        (
            ["--methods", "carrier-pigeon"],
            1,
            "Unknown method carrier-pigeon; choose from totp, email, sms.",
        ),
        (["--methods", ""], 1, "Allow at least one method."),
        (["--remember-days", "91"], 1, "Remember days must be between 0 (off) and 90."),
        (["--remember-days", "-1"], 1, "Remember days must be between 0 (off) and 90."),
    ):
        result = runner.invoke(args=["policy", "set", *args])
        assert result.exit_code == code, args
        assert result.output.endswith(f"Error: {error}\n"), args
    assert "mode:            off" in runner.invoke(args=["policy", "show"]).output


@pytest.mark.parametrize(
    ("settings", "methods", "message"),
    [
        (
            {"MFA_SMS_GATEWAY": None},
            "totp,sms",
            "Text message (SMS) cannot be allowed yet. No SMS gateway is configured: set "
            "MFA_SMS_GATEWAY to webhook or twilio.",
        ),
        (
            {"MFA_SMS_WEBHOOK_SECRET": None},
            "totp,sms",
            "Text message (SMS) cannot be allowed yet. SMS webhook is not configured: set "
            "MFA_SMS_WEBHOOK_URL and MFA_SMS_WEBHOOK_SECRET.",
        ),
        (
            {
                "MFA_SMS_GATEWAY": "twilio",
                "MFA_SMS_TWILIO_ACCOUNT_SID": "AC123",
                "MFA_SMS_TWILIO_AUTH_TOKEN": "token",
            },
            "totp,sms",
            "Text message (SMS) cannot be allowed yet. Twilio is not configured: set "
            "MFA_SMS_TWILIO_ACCOUNT_SID, MFA_SMS_TWILIO_AUTH_TOKEN and MFA_SMS_TWILIO_FROM or "
            "MFA_SMS_TWILIO_MESSAGING_SERVICE_SID.",
        ),
        (
            {"MFA_SMS_GATEWAY": "carrier-pigeon"},
            "sms",
            "Text message (SMS) cannot be allowed yet. Unknown MFA_SMS_GATEWAY "
            "'carrier-pigeon'; use one of: console, twilio, webhook.",
        ),
        (
            {"MAIL_SERVER": None},
            "email,totp",
            "Email cannot be allowed yet. No mail server is configured: set MAIL_SERVER (with "
            "MAIL_PORT, MAIL_USE_TLS, MAIL_USERNAME and MAIL_PASSWORD as the server needs).",
        ),
    ],
    ids=["no-gateway", "webhook-without-secret", "twilio-without-sender", "unknown", "no-mail"],
)
def test_policy_refuses_a_method_it_cannot_deliver(app, runner, settings, methods, message):
    app.config.update(settings)
    result = runner.invoke(args=["policy", "set", "--methods", methods])
    assert result.exit_code == 1
    assert result.output == f"Error: {message}\n"
    with app.app_context():
        assert db.session.scalar(sa.select(ClinicPolicy)) is None  # nothing stored: the default
        assert db.session.scalar(sa.select(AuditEvent.event)) is None


@pytest.mark.parametrize(
    "settings",
    [
        {},  # the tests' SMTP server and webhook
        {"MFA_MAIL_TRANSPORT": "console", "MFA_SMS_GATEWAY": "console", "MAIL_SERVER": None},
        {
            "MFA_SMS_GATEWAY": "twilio",
            "MFA_SMS_TWILIO_ACCOUNT_SID": "AC123",
            "MFA_SMS_TWILIO_AUTH_TOKEN": "token",
            "MFA_SMS_TWILIO_MESSAGING_SERVICE_SID": "MG123",
        },
    ],
    ids=["smtp-and-webhook", "console", "twilio-messaging-service"],
)
def test_policy_allows_methods_it_can_deliver(app, runner, settings):
    app.config.update(settings)
    result = runner.invoke(args=["policy", "set", "--methods", "sms,email,totp"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.scalar(sa.select(ClinicPolicy.allowed_methods)) == "totp,email,sms"
