"""One shape for every factor: the registry, one sign-in completion, fresh authentication,
one factor per kind (FAC-1..7, WIZ-1, ACC-3, SEC-2)."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from models import AuditEvent, MfaFactor, MfaSetup, User, db
from services import factor_kinds, qr, totp
from tests.conftest import PASSWORD, AuthActions, Mailbox, make_app

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
NURSE = "nurse@clinic.example"
MOBILE = "+61412345678"
KEY_RE = re.compile(r'<p class="secret-key"[^>]*><code>([A-Z2-7 ]+)</code>')
CODE_RE = re.compile(r"\b(\d{6})\b")
# What an email or SMS user must never be told.
APP_WORDS = ("authenticator app", "your app")


class Inbox:
    """Where each kind's codes arrive: the app's key on the page, the mailbox, the SMS hook."""

    def __init__(self, client, mailbox: Mailbox, sms_inbox) -> None:
        self.client, self.mailbox, self.sms = client, mailbox, sms_inbox
        self.secret: str | None = None

    def setup_code(self, kind: str, auth: AuthActions, when: datetime) -> str:
        if kind == "totp":
            page = self.client.get("/mfa/setup/app").get_data(as_text=True)
            self.secret = KEY_RE.search(page).group(1).replace(" ", "")
            return pyotp.TOTP(self.secret).at(when)
        typed = {"email": {"email": NURSE}, "sms": {"number": ""}}[kind]
        assert auth.post(f"/mfa/setup/{kind}", typed).status_code == 303
        return self.last(kind)

    def last(self, kind: str, when: datetime = T0) -> str:
        if kind == "totp":
            return pyotp.TOTP(self.secret).at(when)
        if kind == "email":
            return CODE_RE.search(Mailbox.text(self.mailbox.to(NURSE)[-1])).group(1)
        return CODE_RE.search(self.sms.to(MOBILE)[-1]["body"]).group(1)


def code_step(kind: str) -> str:
    return "/mfa/setup/app/code" if kind == "totp" else f"/mfa/setup/{kind}/code"


@pytest.mark.parametrize("kind", [k.name for k in factor_kinds.enrollable()])
def test_every_kind_sets_up_and_signs_in_through_the_same_path(
    app, client, auth, make_user, set_policy, mailbox, sms_inbox, kind
):
    set_policy(mode="required", methods="totp,email,sms", remember_days=0)
    make_user(NURSE, mobile_number=MOBILE)
    inbox = Inbox(client, mailbox, sms_inbox)
    label = factor_kinds.get(kind).label
    seen: list[str] = []
    with time_machine.travel(T0, tick=False) as clock:
        auth.login()
        auth.post("/mfa/setup", {"method": kind})
        code = inbox.setup_code(kind, auth, T0)
        proved = auth.post(code_step(kind), {"code": code})
        assert proved.headers["Location"] == "/mfa/setup/recovery-codes"
        seen.append(client.get("/mfa/setup/recovery-codes").get_data(as_text=True))
        seen.append(client.get("/mfa/setup/recovery-codes.txt").get_data(as_text=True))
        seen.append(client.get("/mfa/setup/recovery-codes/print").get_data(as_text=True))
        auth.post("/mfa/setup/recovery-codes")
        seen.append(client.get("/mfa/setup/done").get_data(as_text=True))
        auth.post("/mfa/setup/done")
        home = client.get("/").get_data(as_text=True)
        assert f"On ({label.lower()})" in home
        seen.append(home)
        auth.logout()
        clock.shift(timedelta(minutes=2))
        assert auth.login().headers["Location"] == "/mfa/challenge"
        challenge = client.get("/mfa/challenge").get_data(as_text=True)
        seen.append(challenge)
        signed_in = auth.verify_totp(inbox.last(kind, T0 + timedelta(minutes=2)))
        assert signed_in.headers["Location"] == "/"
    seen.extend(Mailbox.text(m) for m in mailbox.to(NURSE))
    assert factor_kinds.get(kind).set_up_message in seen[0]
    assert factor_kinds.get(kind).code_source in seen[3]
    assert factor_kinds.get(kind).lost_phrase in seen[1]
    if kind != "totp":
        for text in seen:
            lowered = text.lower()
            assert not any(word in lowered for word in APP_WORDS), text[:400]


WAYS = ["password_only", "challenge", "recovery_code", "wizard", "remembered_device"]


@pytest.mark.parametrize("way", WAYS)
def test_every_way_in_ends_through_one_completion(
    app, client, auth, make_user, enrol_totp, set_policy, way
):
    """New session id, the sign_in.succeeded audit row, and the safe ``next`` honoured."""
    set_policy(mode="off" if way == "password_only" else "required", remember_days=30)
    user_id = make_user(NURSE)
    with time_machine.travel(T0, tick=False):
        if way != "wizard" and way != "password_only":
            secret, codes = enrol_totp(user_id, with_recovery=True)
        if way == "remembered_device":
            auth.login()
            auth.verify_totp(pyotp.TOTP(secret).at(T0), remember="y")
            auth.logout()
        client.get("/sign-in")
        before = sid(client)  # none: not signed in
        first = auth.login(next="/?page=2")
        if way in ("password_only", "remembered_device"):
            final = first
        else:
            before = sid(client)  # the pending sign-in's token
        if way == "challenge":
            final = auth.verify_totp(pyotp.TOTP(secret).at(T0 + timedelta(seconds=30)))
        elif way == "recovery_code":
            final = auth.post("/mfa/challenge/recovery", {"code": codes[0]})
        elif way == "wizard":
            secret = start_app_setup(client, auth)
            auth.post("/mfa/setup/app/code", {"code": pyotp.TOTP(secret).at(T0)})
            auth.post("/mfa/setup/recovery-codes")
            auth.post("/mfa/setup/remember", {"remember": "no"})
            final = auth.post("/mfa/setup/done")
        assert final.status_code == 303 and final.headers["Location"] == "/?page=2"
        after = sid(client)
        assert after and after != before
        assert client.get("/").status_code == 200
    with app.app_context():
        methods = list(
            db.session.scalars(
                sa.select(AuditEvent.details).where(AuditEvent.event == "sign_in.succeeded")
            )
        )
    expected = {
        "password_only": "none",
        "challenge": "totp",
        "recovery_code": "recovery",
        "wizard": "totp",
        "remembered_device": "device",
    }[way]
    assert methods[-1]["method"] == expected


def sid(client) -> str | None:
    """The session token the cookie carries (services/sessions.TOKEN_KEY)."""
    with client.session_transaction() as cookie_session:
        return cookie_session.get("sid")


def start_app_setup(client, auth: AuthActions) -> str:
    auth.post("/mfa/setup", {"method": "totp"})
    return (
        KEY_RE.search(client.get("/mfa/setup/app").get_data(as_text=True)).group(1).replace(" ", "")
    )


def test_the_wizard_after_the_second_step_reloads_the_whole_page(
    client, auth, make_user, set_policy
):
    """With htmx, the step after the sign-in completes comes as a full page (HX-Redirect), so
    the header shows the name and "Sign out"."""
    set_policy(mode="required")
    make_user(NURSE)
    with time_machine.travel(T0, tick=False):
        auth.login()
        secret = start_app_setup(client, auth)
        token = auth.csrf_token("/mfa/setup/app/code")
        proved = client.post(
            "/mfa/setup/app/code",
            data={"csrf_token": token, "code": pyotp.TOTP(secret).at(T0)},
            headers={"HX-Request": "true"},
        )
        assert proved.status_code == 204
        assert proved.headers["HX-Redirect"] == "/mfa/setup/recovery-codes"
        page = client.get("/mfa/setup/recovery-codes").get_data(as_text=True)
        assert "Sign out" in page


def test_a_stale_session_reauthenticates_before_the_wizard(
    app, client, auth, make_user, set_policy
):
    set_policy(mode="optional")
    make_user(NURSE)
    with time_machine.travel(T0, tick=False) as clock:
        auth.login()
        auth.post("/mfa/setup/decline", page="/mfa/setup")
        assert client.get("/mfa/setup").status_code == 200  # fresh: just signed in
        clock.shift(timedelta(minutes=10, seconds=1))
        token = auth.csrf_token("/")
        # A direct POST changes nothing and asks for the password.
        posted = client.post(
            "/mfa/setup",
            data={"csrf_token": token, "method": "totp"},
            headers={"Referer": "http://localhost/mfa/setup"},
        )
        assert posted.status_code == 303
        assert posted.headers["Location"] == "/reauthenticate?next=/mfa/setup"
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(MfaSetup)) == 0
        opened = client.get("/mfa/setup")
        assert opened.headers["Location"] == "/reauthenticate?next=/mfa/setup"
        page = client.get(opened.headers["Location"]).get_data(as_text=True)
        assert "Confirm it's you" in page
        wrong = auth.post(
            "/reauthenticate",
            {"password": "not it at all", "next": "/mfa/setup"},
            page="/reauthenticate",
        )
        assert wrong.status_code == 422 and "That password is not right" in wrong.get_data(
            as_text=True
        )
        right = auth.post(
            "/reauthenticate", {"password": PASSWORD, "next": "/mfa/setup"}, page="/reauthenticate"
        )
        assert right.status_code == 303 and right.headers["Location"] == "/mfa/setup"
        assert client.get("/mfa/setup").status_code == 200
        assert client.get("/").status_code == 200  # still signed in under the new session id
        assert auth.post("/mfa/setup", {"method": "totp"}).headers["Location"] == "/mfa/setup/app"
    with app.app_context():
        events = list(db.session.scalars(sa.select(AuditEvent.event)))
    assert "reauth.failed" in events and "reauth.succeeded" in events


def test_a_stale_session_cannot_post_to_a_later_step(app, client, auth, make_user, set_policy):
    set_policy(mode="optional")
    make_user(NURSE)
    with time_machine.travel(T0, tick=False) as clock:
        auth.login()
        auth.post("/mfa/setup/decline", page="/mfa/setup")
        secret = start_app_setup(client, auth)
        clock.shift(timedelta(minutes=11))
        token = auth.csrf_token("/")
        code = pyotp.TOTP(secret).at(T0 + timedelta(minutes=11))
        posted = client.post("/mfa/setup/app/code", data={"csrf_token": token, "code": code})
        assert posted.headers["Location"].startswith("/reauthenticate")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(MfaFactor)) == 0


def test_a_new_app_replaces_the_old_only_once_proved(
    app, client, auth, make_user, enrol_totp, set_policy, mailbox
):
    set_policy(mode="required")
    user_id = make_user(NURSE)
    old_secret, _ = enrol_totp(user_id, with_recovery=True)
    other = AuthActions(app.test_client())
    with time_machine.travel(T0, tick=False) as clock:
        auth.login()
        auth.verify_totp(pyotp.TOTP(old_secret).at(T0))
        new_secret = start_app_setup(client, auth)
        assert new_secret != old_secret
        # Until the new phone is proved, the old one still signs in (another browser).
        clock.shift(timedelta(seconds=30))
        other.login()
        now = T0 + timedelta(seconds=30)
        assert other.verify_totp(pyotp.TOTP(old_secret).at(now)).headers["Location"] == "/"
        proved = auth.post("/mfa/setup/app/code", {"code": pyotp.TOTP(new_secret).at(now)})
        assert proved.headers["Location"] in ("/mfa/setup/remember", "/mfa/setup/done")
        # The other browser was signed out, and now only the new phone works.
        assert other.client.get("/").headers["Location"].startswith("/sign-in")
        clock.shift(timedelta(seconds=30))
        later = T0 + timedelta(minutes=1)
        other.login()
        assert other.verify_totp(pyotp.TOTP(old_secret).at(later)).status_code == 422
        assert other.verify_totp(pyotp.TOTP(new_secret).at(later)).headers["Location"] == "/"
    with app.app_context():
        [factor] = db.session.scalars(sa.select(MfaFactor)).all()
        assert factor.kind == "totp" and factor.is_default
        events = list(db.session.scalars(sa.select(AuditEvent.event)))
    assert "mfa.factor_replaced" in events
    assert any("was replaced" in m["Subject"] for m in mailbox.to(NURSE))


def test_the_database_refuses_a_second_factor_of_one_kind(app, make_user, enrol_totp):
    user_id = make_user(NURSE)
    enrol_totp(user_id)
    with app.app_context():
        db.session.add(MfaFactor(user_id=user_id, kind="totp", secret_encrypted="x"))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_twenty_racing_confirmations_leave_one_factor(database_url, app, make_user, set_policy):
    set_policy(mode="required")
    make_user(NURSE)
    other = make_app(database_url)
    browser = AuthActions(app.test_client())
    with time_machine.travel(T0, tick=False):
        browser.login()
        secret = start_app_setup(browser.client, browser)
        token = browser.csrf_token("/mfa/setup/app/code")
        name = app.config["SESSION_COOKIE_NAME"]
        cookie = browser.client.get_cookie(name).value
        code = pyotp.TOTP(secret).at(T0)
        barrier = threading.Barrier(20)
        statuses: list[int] = []

        def post(instance) -> None:
            c = instance.test_client()
            c.set_cookie(name, cookie)
            barrier.wait(timeout=20)
            statuses.append(
                c.post("/mfa/setup/app/code", data={"csrf_token": token, "code": code}).status_code
            )

        threads = [
            threading.Thread(target=post, args=(app if i % 2 else other,)) for i in range(20)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert len(statuses) == 20
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(MfaFactor)) == 1
        added = db.session.scalar(
            sa.select(sa.func.count()).where(AuditEvent.event == "mfa.factor_added")
        )
        assert added == 1
    with other.app_context():
        db.engine.dispose()


def test_the_challenge_says_when_nothing_was_sent(app, client, auth, make_user, set_policy):
    """Mail server down at sign-in: no "we sent" prompt, but what happened and the ways on."""
    set_policy(mode="required", methods="totp,email")
    user_id = make_user(NURSE)
    with app.app_context():
        db.session.add(MfaFactor(user_id=user_id, kind="email", is_default=True, target=NURSE))
        db.session.commit()
    app.config["MAIL_PORT"] = 1  # nothing listens there
    auth.login()
    page = client.get("/mfa/challenge").get_data(as_text=True)
    assert "We could not send the email just now" in page
    assert "No code has been sent for this sign-in" in page
    assert "we emailed" not in page and "Enter the 6-digit code" not in page
    assert "Send me a code" in page and "Use a recovery code instead" in page


def test_plurals_are_right(app, client, auth, make_user, set_policy, mailbox):
    """One second is "1 second", not "1 seconds"."""
    make_user(NURSE)
    with time_machine.travel(T0, tick=False):
        for _ in range(5):
            auth.login(password="wrong password here")
        refused = auth.login(password="wrong password here")
        assert refused.status_code == 429
        assert "Try again in 1 second." in refused.get_data(as_text=True)
    set_policy(mode="required", methods="totp,email")
    with app.app_context():
        user = db.session.scalar(sa.select(User))
        db.session.add(MfaFactor(user_id=user.id, kind="email", is_default=True, target=NURSE))
        db.session.commit()
    with time_machine.travel(T0 + timedelta(hours=1), tick=False) as clock:
        assert auth.login().headers["Location"] == "/mfa/challenge"
        clock.shift(timedelta(seconds=59))
        page = client.get("/mfa/challenge").get_data(as_text=True)
        assert 'data-countdown="1">1 second</span>' in page


def test_the_wizard_shows_the_uri_the_code_computes(client, auth, make_user, set_policy):
    set_policy(mode="required")
    make_user(NURSE)
    auth.login()
    secret = start_app_setup(client, auth)
    page = client.get("/mfa/setup/app").get_data(as_text=True)
    uri = totp.provisioning_uri(secret, NURSE, "Harbour Clinic")
    expected = qr.svg(uri, title="QR code to add Harbour Clinic to your authenticator app")
    assert str(expected) in page


def test_the_challenge_stays_out_of_htmx_history(client, auth, make_user, enrol_totp, set_policy):
    set_policy(mode="required")
    enrol_totp(make_user(NURSE))
    auth.login()
    page = client.get("/mfa/challenge").get_data(as_text=True)
    assert '<body hx-history="false">' in page


def test_the_registry_names_the_stored_kinds():
    assert [k.name for k in factor_kinds.enrollable()] == ["totp", "email", "sms"]
    assert [k.name for k in factor_kinds.sending_codes()] == ["email", "sms"]
    assert factor_kinds.get("recovery") is factor_kinds.RECOVERY
    with pytest.raises(KeyError):
        factor_kinds.get("carrier-pigeon")
