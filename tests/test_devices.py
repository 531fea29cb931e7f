"""Remembered devices (DEV-1, DEV-2 revocation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from models import RememberedDevice, db
from tests.conftest import PASSWORD, AuthActions

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def nurse(make_user, enrol_totp, set_policy):
    set_policy(mode="required", remember_days=90)
    user_id = make_user()
    secret, _ = enrol_totp(user_id)
    return user_id, secret


def remember_here(auth: AuthActions, secret: str, when: datetime) -> str:
    """Sign in with 'Don't ask again on this device'; returns the device cookie's value."""
    auth.login()
    response = auth.verify_totp(pyotp.TOTP(secret).at(when), remember="y")
    assert response.headers["Location"] == "/"
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if "mfa_device=" in c)
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    assert cookie.startswith("__Host-mfa_device=") and "Path=/" in cookie
    assert "Max-Age=7776000" in cookie  # 90 days
    return cookie.split(";", 1)[0].split("=", 1)[1]


def test_remembered_device_skips_the_code(app, client, auth, nurse):
    _, secret = nurse
    with time_machine.travel(T0, tick=False) as clock:
        remember_here(auth, secret, T0)
        auth.logout()
        clock.shift(timedelta(days=10))
        assert auth.login().headers["Location"] == "/"
        assert client.get("/").status_code == 200
    with app.app_context():
        device = db.session.scalar(sa.select(RememberedDevice))
        assert device.label == "Browser on unknown system"
        assert device.last_used_at == T0 + timedelta(days=10)


def test_the_password_is_still_needed(client, auth, nurse):
    _, secret = nurse
    with time_machine.travel(T0, tick=False):
        remember_here(auth, secret, T0)
        auth.logout()
        assert auth.login(password="not my password at all").status_code == 422
        assert client.get("/").headers["Location"].startswith("/sign-in")


def test_not_for_another_user(app, client, auth, nurse, make_user, enrol_totp):
    _, secret = nurse
    enrol_totp(make_user("doctor@clinic.example"))
    with time_machine.travel(T0, tick=False):
        remember_here(auth, secret, T0)
        auth.logout()
        assert auth.login("doctor@clinic.example").headers["Location"] == "/mfa/challenge"


def test_not_after_expiry(client, auth, nurse):
    _, secret = nurse
    with time_machine.travel(T0, tick=False) as clock:
        remember_here(auth, secret, T0)
        auth.logout()
        clock.shift(timedelta(days=90, seconds=1))
        assert auth.login().headers["Location"] == "/mfa/challenge"


def test_shortened_policy_applies_to_old_devices(client, auth, nurse, set_policy):
    _, secret = nurse
    with time_machine.travel(T0, tick=False) as clock:
        remember_here(auth, secret, T0)
        auth.logout()
        set_policy(remember_days=7)
        clock.shift(timedelta(days=8))
        assert auth.login().headers["Location"] == "/mfa/challenge"


def test_policy_off_ignores_devices_and_hides_the_option(client, auth, nurse, set_policy):
    _, secret = nurse
    with time_machine.travel(T0, tick=False):
        remember_here(auth, secret, T0)
        auth.logout()
        set_policy(remember_days=0)
        assert auth.login().headers["Location"] == "/mfa/challenge"
        assert "on this device" not in client.get("/mfa/challenge").get_data(as_text=True)


def test_not_after_password_change(client, auth, nurse, runner):
    _, secret = nurse
    with time_machine.travel(T0, tick=False):
        remember_here(auth, secret, T0)
        new = "a brand new password 2026"
        result = runner.invoke(
            args=["users", "set-password", "nurse@clinic.example", "--password-stdin"], input=new
        )
        assert result.exit_code == 0, result.output
        # The session it was remembered in has ended too.
        assert client.get("/").headers["Location"].startswith("/sign-in")
        assert auth.login(password=new).headers["Location"] == "/mfa/challenge"


def test_not_after_mfa_reset(app, client, auth, nurse, runner):
    _, secret = nurse
    with time_machine.travel(T0, tick=False):
        remember_here(auth, secret, T0)
        assert runner.invoke(args=["users", "reset-mfa", "nurse@clinic.example"]).exit_code == 0
        assert client.get("/").headers["Location"].startswith("/sign-in")
        assert auth.login().headers["Location"] == "/mfa/setup"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(RememberedDevice.id))) == 0


@pytest.mark.parametrize(
    "forged",
    ["", "x", "A" * 43, "A" * 4000, "..%00..", "\u00e9\u00e9\u00e9"],
    ids=["empty", "short", "guess", "huge", "nul", "non-ascii"],
)
def test_forged_cookie_changes_nothing(app, client, auth, nurse, forged):
    client.set_cookie("__Host-mfa_device", forged)
    response = auth.login()
    assert response.headers["Location"] == "/mfa/challenge"


def test_someone_elses_cookie_does_not_work(app, nurse, make_user, enrol_totp):
    _, secret = nurse
    enrol_totp(make_user("doctor@clinic.example"))
    nurse_browser = AuthActions(app.test_client())
    with time_machine.travel(T0, tick=False):
        token = remember_here(nurse_browser, secret, T0)
        thief = AuthActions(app.test_client())
        thief.client.set_cookie("__Host-mfa_device", token)
        assert (
            thief.login("doctor@clinic.example", PASSWORD).headers["Location"] == "/mfa/challenge"
        )


def test_remember_step_in_the_wizard_sets_the_cookie(app, client, auth, make_user, set_policy):
    set_policy(mode="required", remember_days=30)
    make_user()
    with time_machine.travel(T0, tick=False) as clock:
        auth.login()
        auth.post("/mfa/setup", {"method": "totp"})
        page = client.get("/mfa/setup/app").get_data(as_text=True)
        import re

        secret = re.search(r"<code>([A-Z2-7 ]+)</code>", page).group(1).replace(" ", "")
        auth.post("/mfa/setup/app/code", {"code": pyotp.TOTP(secret).at(T0)})
        auth.post("/mfa/setup/recovery-codes")
        assert "30 days" in client.get("/mfa/setup/remember").get_data(as_text=True)
        response = auth.post("/mfa/setup/remember", {"remember": "yes"})
        assert any("Max-Age=2592000" in c for c in response.headers.getlist("Set-Cookie"))
        auth.post("/mfa/setup/done")
        auth.logout()
        clock.shift(timedelta(days=1))
        assert auth.login().headers["Location"] == "/"
