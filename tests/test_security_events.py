"""Sessions, devices and notifications on security events (AUTH-6, DEV-2, ACC-3)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from models import MfaFactor, RememberedDevice, User, UserSession, db
from tests.conftest import AuthActions, Mailbox

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)  # 20:00 AEDT in Sydney
NURSE = "nurse@clinic.example"
CHROME_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def code(secret: str, when: datetime = T0) -> str:
    return pyotp.TOTP(secret).at(when)


def browser(app) -> AuthActions:
    return AuthActions(app.test_client())


@pytest.fixture
def nurse(make_user, enrol_totp, set_policy):
    set_policy(mode="required", remember_days=90)
    user_id = make_user(NURSE)
    secret, codes = enrol_totp(user_id, with_recovery=True)
    return user_id, secret, codes


def signed_in(b: AuthActions) -> bool:
    return b.client.get("/").status_code == 200


def test_recovery_code_ends_other_sessions_and_devices(app, nurse, mailbox):
    _, secret, codes = nurse
    desk, phone = browser(app), browser(app)
    with time_machine.travel(T0, tick=False):
        desk.login()
        assert desk.verify_totp(code(secret), remember="y").headers["Location"] == "/"
        assert signed_in(desk)
        phone.login()
        used = phone.post("/mfa/challenge/recovery", {"code": codes[0]})
        assert used.headers["Location"] == "/"
        assert signed_in(phone)
        # The desk's session ended at once, and its remembered device skips nothing now.
        assert desk.client.get("/").headers["Location"].startswith("/sign-in")
        assert desk.login().headers["Location"] == "/mfa/challenge"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RememberedDevice)) == 0
        reasons = db.session.scalars(sa.select(UserSession.end_reason)).all()
        assert "recovery_code_used" in reasons
    [mail] = [m for m in mailbox.to(NURSE) if "recovery code" in m["Subject"]]
    assert "every other device signed in to your account was signed out" in mailbox.text(mail)


def test_setting_up_a_factor_ends_the_users_other_sessions(app, make_user, set_policy, mailbox):
    set_policy(mode="optional")
    make_user(NURSE)
    desk, phone = browser(app), browser(app)
    with time_machine.travel(T0, tick=False):
        desk.login()
        desk.post("/mfa/setup/decline", page="/mfa/setup")
        assert signed_in(desk)
        phone.login()
        phone.post("/mfa/setup", {"method": "totp"})
        page = phone.client.get("/mfa/setup/app").get_data(as_text=True)
        secret = re.search(r"<code>([A-Z2-7 ]+)</code>", page).group(1).replace(" ", "")
        phone.post("/mfa/setup/app/code", {"code": code(secret)})
        assert signed_in(phone)
        assert desk.client.get("/").headers["Location"].startswith("/sign-in")
    with app.app_context():
        assert "factor_changed" in db.session.scalars(sa.select(UserSession.end_reason)).all()


def test_policy_change_sends_a_signed_in_user_without_a_factor_to_the_wizard(
    app, client, auth, make_user, set_policy
):
    set_policy(mode="off")
    make_user(NURSE)
    with time_machine.travel(T0, tick=False):
        assert auth.login().headers["Location"] == "/"
        assert client.get("/").status_code == 200
        set_policy(mode="required")
        response = client.get("/")
        assert response.status_code == 303 and response.headers["Location"] == "/mfa/setup"
        # Nothing else opens until the factor is set up.
        assert client.get("/").headers["Location"] == "/mfa/setup"
        setup = client.get("/mfa/setup").get_data(as_text=True)
        assert "Authenticator app" in setup and "Don&#39;t use" not in setup
        auth.post("/mfa/setup", {"method": "totp"})
        page = client.get("/mfa/setup/app").get_data(as_text=True)
        secret = re.search(r"<code>([A-Z2-7 ]+)</code>", page).group(1).replace(" ", "")
        auth.post("/mfa/setup/app/code", {"code": code(secret)})
        auth.post("/mfa/setup/recovery-codes")
        auth.post("/mfa/setup/remember", {"remember": "no"})
        assert auth.post("/mfa/setup/done").headers["Location"] == "/"
        assert client.get("/").status_code == 200


def test_optional_mode_leaves_a_signed_in_user_alone(app, client, auth, make_user, set_policy):
    set_policy(mode="off")
    make_user(NURSE)
    auth.login()
    set_policy(mode="optional")
    assert client.get("/").status_code == 200


def test_remember_days_zero_then_ninety_revives_nothing(app, client, auth, nurse, set_policy):
    _, secret, _ = nurse
    with time_machine.travel(T0, tick=False):
        auth.login()
        auth.verify_totp(code(secret), remember="y")
        auth.logout()
        assert auth.login().headers["Location"] == "/"  # remembered
        auth.logout()
        set_policy(remember_days=0)
        set_policy(remember_days=90)
        assert auth.login().headers["Location"] == "/mfa/challenge"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RememberedDevice)) == 0


def test_administrators_are_not_remembered_by_default(
    app, client, auth, make_user, enrol_totp, set_policy
):
    set_policy(mode="required", remember_days=90)
    admin_id = make_user("boss@clinic.example", role="Administrator")
    secret, _ = enrol_totp(admin_id)
    with time_machine.travel(T0, tick=False) as clock:
        auth.login("boss@clinic.example")
        page = client.get("/mfa/challenge").get_data(as_text=True)
        assert "Don&#39;t ask again on this device" not in page
        # Ticking it anyway (an edited form) remembers nothing.
        response = auth.verify_totp(code(secret), remember="y")
        assert not any("mfa_device" in c for c in response.headers.getlist("Set-Cookie"))
        auth.logout()
        # Allowed by the policy: the box is there and the device is remembered.
        set_policy(admins_may_remember=True)
        clock.shift(timedelta(seconds=30))
        auth.login("boss@clinic.example")
        assert "Don&#39;t ask again" in client.get("/mfa/challenge").get_data(as_text=True)
        auth.verify_totp(code(secret, T0 + timedelta(seconds=30)), remember="y")
        auth.logout()
        assert auth.login("boss@clinic.example").headers["Location"] == "/"
        auth.logout()
        # Switched off again: the old cookie no longer skips the challenge.
        set_policy(admins_may_remember=False)
        assert auth.login("boss@clinic.example").headers["Location"] == "/mfa/challenge"


def test_sign_out_expires_the_cookie_and_clears_site_data(app, client, auth, make_user):
    make_user(NURSE)
    auth.login()
    response = auth.logout()
    assert response.status_code == 303
    assert response.headers["Location"] == "/sign-in?signed_out=1"
    assert response.headers["Clear-Site-Data"] == '"cache", "storage"'
    name = app.config["SESSION_COOKIE_NAME"]
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(name + "=")]
    assert cookie.startswith(f"{name}=;") and "Expires=Thu, 01 Jan 1970 00:00:00 GMT" in cookie
    assert "You have signed out." in client.get(response.headers["Location"]).get_data(as_text=True)


def test_security_emails_say_when_where_and_what(app, make_user, enrol_totp, set_policy, mailbox):
    app.config["MFA_TIME_ZONE"] = "Australia/Sydney"
    set_policy(mode="required", methods="totp,email", remember_days=30)
    user_id = make_user(NURSE)
    secret, codes = enrol_totp(user_id, with_recovery=True)
    b = browser(app)
    b.client.environ_base.update(
        {"HTTP_USER_AGENT": CHROME_ON_WINDOWS, "REMOTE_ADDR": "203.0.113.9"}
    )
    with time_machine.travel(T0, tick=False):
        # A lock, a recovery code, a remembered device.
        for i in range(10):
            if i % 5 == 0:
                b.login()
            b.verify_totp("000000")
        with app.app_context():
            db.session.get(User, user_id).mfa_locked_until = None
            db.session.commit()
        b.login()
        b.post("/mfa/challenge/recovery", {"code": codes[0]})
        b.logout()
        b.login()
        b.verify_totp(code(secret), remember="y")
    subjects = {m["Subject"]: Mailbox.text(m) for m in mailbox.to(NURSE)}
    assert set(subjects) == {
        "Your sign-in code was entered wrongly too many times",
        "A recovery code was used to sign in",
        "A device will skip your sign-in code",
    }
    for subject, text in subjects.items():
        assert "When: 20:00 on Monday 23 November 2026 (AEDT)" in text, subject
        assert "From: 203.0.113.9, Chrome on Windows" in text, subject
        assert "If this was not you, change your password now" in text, subject
    locked = subjects["Your sign-in code was entered wrongly too many times"]
    assert "locked until 20:15 on Monday 23 November 2026 (AEDT)" in locked
    assert "Chrome on Windows" in subjects["A device will skip your sign-in code"]


def test_sign_in_code_email_says_when_and_from_where(app, make_user, set_policy, mailbox):
    app.config["MFA_TIME_ZONE"] = "Australia/Sydney"
    set_policy(mode="required", methods="totp,email")
    user_id = make_user(NURSE)
    with app.app_context():
        db.session.add(MfaFactor(user_id=user_id, kind="email", is_default=True, target=NURSE))
        db.session.commit()
    b = browser(app)
    b.client.environ_base.update(
        {"HTTP_USER_AGENT": CHROME_ON_WINDOWS, "REMOTE_ADDR": "203.0.113.9"}
    )
    with time_machine.travel(T0 + timedelta(minutes=14), tick=False):
        b.login()
    [mail] = mailbox.to(NURSE)
    text = Mailbox.text(mail)
    assert (
        "Requested at 20:14 on Monday 23 November 2026 (AEDT) from 203.0.113.9, "
        "Chrome on Windows." in text
    )
    assert "If you did not try to sign in, someone knows your password" in text
