"""Email and SMS codes through real delivery (FAC-2 to FAC-4, FAC-6, OPS-5, SEC-2)."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from models import AuditEvent, MfaFactor, MfaSetup, OneTimeCode, User, UserSession, db
from services.sms import verify_webhook_signature
from tests.conftest import SMS_SECRET, AuthActions, Mailbox

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
NURSE = "nurse@clinic.example"
MOBILE = "+61412345678"
CODE_RE = re.compile(r"\b(\d{6})\b")


def last_code(mailbox: Mailbox, address: str = NURSE) -> str:
    return CODE_RE.search(Mailbox.text(mailbox.to(address)[-1])).group(1)


def last_sms(inbox, number: str = MOBILE) -> str:
    return CODE_RE.search(inbox.to(number)[-1]["body"]).group(1)


def enrol(app, user_id: int, kind: str, target: str) -> None:
    with app.app_context():
        db.session.add(MfaFactor(user_id=user_id, kind=kind, is_default=True, target=target))
        db.session.commit()


def events(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEvent.event).order_by(AuditEvent.id)))


@pytest.fixture
def email_nurse(app, make_user, set_policy):
    set_policy(mode="required", methods="totp,email,sms")
    user_id = make_user(NURSE, mobile_number=MOBILE)
    enrol(app, user_id, "email", NURSE)
    return user_id


@pytest.fixture
def sms_nurse(app, make_user, set_policy):
    set_policy(mode="required", methods="totp,email,sms")
    user_id = make_user(NURSE, mobile_number=MOBILE)
    enrol(app, user_id, "sms", MOBILE)
    return user_id


def test_email_code_sign_in(client, auth, email_nurse, mailbox):
    with time_machine.travel(T0, tick=False):
        assert auth.login().headers["Location"] == "/mfa/challenge"
        [mail] = mailbox.to(NURSE)
        text = Mailbox.text(mail)
        assert "did not try to sign in" in text and "change it now" in text
        assert mail.get_body(preferencelist=("html",)) is not None
        page = client.get("/mfa/challenge").get_data(as_text=True)
        assert "n****@clinic.example" in page
        assert auth.verify_totp(last_code(mailbox)).headers["Location"] == "/"


def test_sms_code_sign_in_with_signed_webhook(client, auth, sms_nurse, sms_inbox):
    with time_machine.travel(T0, tick=False):
        auth.login()
        [sms] = sms_inbox.to(MOBILE)
        assert "Didn't try to sign in? Change your password" in sms["body"]
        assert sms["signature"].startswith("sha256=")
        page = client.get("/mfa/challenge").get_data(as_text=True)
        assert "04******78" in page
        assert auth.verify_totp(last_sms(sms_inbox)).headers["Location"] == "/"


def test_webhook_signature_verifies(app, sms_nurse, sms_inbox):
    """Re-create the signed body as the receiver would and check it."""
    import json

    with app.app_context():
        from services.sms import send_sms

        send_sms(MOBILE, "hello")
    message = dict(sms_inbox.messages[-1])
    signature = message.pop("signature")
    body = json.dumps(message, separators=(",", ":"), sort_keys=True).encode()
    assert verify_webhook_signature(SMS_SECRET, str(message["sent_at"]), body, signature)
    assert not verify_webhook_signature("wrong", str(message["sent_at"]), body, signature)


def test_code_expires(client, auth, email_nurse, mailbox):
    with time_machine.travel(T0, tick=False) as clock:
        auth.login()
        code = last_code(mailbox)
        clock.shift(timedelta(minutes=5, seconds=1))
        # The pending sign-in also lasts 5 minutes: sign in again, then try the old code.
        auth.login()
        mailbox.clear()
        assert auth.verify_totp(code).status_code == 422


def test_admin_may_allow_ten_minutes(client, auth, email_nurse, mailbox, set_policy):
    set_policy(code_valid_minutes=10)
    with time_machine.travel(T0, tick=False):
        auth.login()
        assert "10 minutes" in Mailbox.text(mailbox.to(NURSE)[-1])
    with pytest.raises(Exception, match="1 to 10"):
        set_policy(code_valid_minutes=11)


def test_code_is_single_use_and_bound_to_its_sign_in(app, email_nurse, mailbox):
    first, second = AuthActions(app.test_client()), AuthActions(app.test_client())
    with time_machine.travel(T0, tick=False) as clock:
        first.login()
        code1 = last_code(mailbox)
        clock.shift(timedelta(seconds=61))
        second.login()  # a new code voids the old one
        code2 = last_code(mailbox)
        assert second.verify_totp(code1).status_code == 422  # void, and not this sign-in's
        assert first.verify_totp(code2).status_code == 422  # the other sign-in's code
        assert second.verify_totp(code2).headers["Location"] == "/"
        second.logout()
        clock.shift(timedelta(seconds=61))
        second.login()
        assert second.verify_totp(code2).status_code == 422  # used once already


def test_five_wrong_tries_kill_a_code(app, client, auth, make_user, set_policy, mailbox):
    """In setup (no sign-in limit in the way): five wrong tries and the code is dead."""
    set_policy(mode="required", methods="totp,email")
    make_user(NURSE)
    with time_machine.travel(T0, tick=False) as clock:
        auth.login()
        auth.post("/mfa/setup", {"method": "email"})
        auth.post("/mfa/setup/email", {"email": NURSE})
        code = last_code(mailbox)
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(5):
            assert auth.post("/mfa/setup/email/code", {"code": wrong}).status_code == 422
        assert auth.post("/mfa/setup/email/code", {"code": code}).status_code == 422
        clock.shift(timedelta(seconds=61))
        assert auth.post("/mfa/setup/email/resend", page="/mfa/setup/email/code").status_code == 303
        fresh = last_code(mailbox)
        assert auth.post("/mfa/setup/email/code", {"code": fresh}).status_code == 303


def test_resend_waits_60_seconds_and_voids_the_old_code(client, auth, email_nurse, mailbox):
    with time_machine.travel(T0, tick=False) as clock:
        auth.login()
        first = last_code(mailbox)
        early = auth.post("/mfa/challenge/resend", page="/mfa/challenge")
        assert early.status_code == 303
        assert "Please wait" in client.get("/mfa/challenge").get_data(as_text=True)
        assert len(mailbox.to(NURSE)) == 1
        clock.shift(timedelta(seconds=61))
        auth.post("/mfa/challenge/resend", page="/mfa/challenge")
        assert len(mailbox.to(NURSE)) == 2
        second = last_code(mailbox)
        if first != second:
            assert auth.verify_totp(first).status_code == 422
        assert auth.verify_totp(second).headers["Location"] == "/"


def test_resend_countdown_with_htmx_and_plain_button(client, auth, email_nurse, mailbox):
    with time_machine.travel(T0, tick=False) as clock:
        auth.login()
        html = client.get("/mfa/challenge").get_data(as_text=True)
        assert 'data-countdown="60"' in html and 'hx-trigger="load delay:60s"' in html
        assert "<noscript>" in html  # a plain button for browsers without JavaScript
        clock.shift(timedelta(seconds=61))
        html = client.get("/mfa/challenge").get_data(as_text=True)
        assert "data-countdown" not in html and "Send a new code" in html


def test_at_most_five_sends_an_hour_per_user(client, auth, email_nurse, mailbox):
    with time_machine.travel(T0, tick=False) as clock:
        for _ in range(5):
            auth.login()  # each sign-in sends a code
            auth.logout()  # "Cancel": the next sign-in starts again from the password
            clock.shift(timedelta(seconds=61))
        assert len(mailbox.to(NURSE)) == 5
        auth.login()
        assert len(mailbox.to(NURSE)) == 5
        assert "Too many codes" in client.get("/mfa/challenge").get_data(as_text=True)
        clock.shift(timedelta(hours=1))
        auth.login()
        assert len(mailbox.to(NURSE)) == 6


def test_at_most_five_sends_an_hour_per_number(app, make_user, set_policy, sms_inbox):
    """Two profiles sharing one mobile number (seed 001) share its limit."""
    set_policy(mode="required", methods="totp,sms")
    ids = [make_user(f"user{i}@clinic.example", mobile_number=MOBILE) for i in range(2)]
    for user_id in ids:
        enrol(app, user_id, "sms", MOBILE)
    with time_machine.travel(T0, tick=False) as clock:
        for i in range(6):
            AuthActions(app.test_client()).login(f"user{i % 2}@clinic.example")
            clock.shift(timedelta(seconds=61))
    assert len(sms_inbox.to(MOBILE)) == 5


def test_twenty_concurrent_submissions_of_one_code(app, client, auth, email_nurse, mailbox):
    name = app.config["SESSION_COOKIE_NAME"]
    with time_machine.travel(T0, tick=False):
        auth.login()
        code = last_code(mailbox)
        token = auth.csrf_token("/mfa/challenge")
        cookie = client.get_cookie(name).value
        barrier = threading.Barrier(20)
        results: list[str] = []

        def submit() -> None:
            browser = app.test_client()
            browser.set_cookie(name, cookie)
            barrier.wait(timeout=10)
            r = browser.post("/mfa/challenge", data={"csrf_token": token, "code": code})
            results.append("in" if r.headers.get("Location") == "/" else str(r.status_code))

        threads = [threading.Thread(target=submit) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert len(results) == 20 and results.count("in") == 1, results
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.count(OneTimeCode.id)).where(OneTimeCode.used_at.is_not(None))
            )
            == 1
        )
        active = db.session.scalar(
            sa.select(sa.func.count(UserSession.id)).where(UserSession.state == "active")
        )
    assert active == 1


def test_smtp_down_at_sign_in_gives_a_way_forward(
    app, client, auth, email_nurse, enrol_totp, mailbox
):
    enrol_totp(email_nurse)  # a second factor, not default
    with app.app_context():
        db.session.execute(
            sa.update(MfaFactor).where(MfaFactor.kind == "totp").values(is_default=False)
        )
        db.session.commit()
    app.config["MAIL_PORT"] = 1  # nothing listens there: connection refused
    with time_machine.travel(T0, tick=False):
        assert auth.login().headers["Location"] == "/mfa/challenge"
        page = client.get("/mfa/challenge")
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        assert "could not send the email" in html
        assert "Use your authenticator app instead" in html and "recovery code" in html
    assert "mfa.code_delivery_failed" in events(app)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(OneTimeCode.id))) == 0


def test_smtp_down_in_the_wizard_saves_nothing(app, client, auth, make_user, set_policy):
    set_policy(mode="required", methods="totp,email")
    make_user(NURSE)
    app.config["MAIL_PORT"] = 1
    auth.login()
    auth.post("/mfa/setup", {"method": "email"})
    response = auth.post("/mfa/setup/email", {"email": NURSE})
    assert response.status_code == 503
    assert "could not send the email" in response.get_data(as_text=True)
    with app.app_context():
        setup = db.session.scalar(sa.select(MfaSetup))
        assert (setup.stage, setup.target) == ("confirm", None)
        assert db.session.scalar(sa.select(sa.func.count(MfaFactor.id))) == 0
        assert db.session.scalar(sa.select(sa.func.count(OneTimeCode.id))) == 0
    assert "mfa.code_delivery_failed" in events(app)


@pytest.mark.parametrize(
    ("status", "delay"), [(500, 0.0), (200, 3.0)], ids=["gateway-500", "gateway-hangs"]
)
def test_sms_gateway_failures(app, client, auth, sms_nurse, sms_inbox, status, delay):
    sms_inbox.status, sms_inbox.delay = status, delay
    app.config["MFA_SMS_TIMEOUT"] = 1
    with time_machine.travel(T0, tick=False):
        response = auth.login()
        assert response.headers["Location"] == "/mfa/challenge"
        html = client.get("/mfa/challenge").get_data(as_text=True)
        assert "could not send the text message" in html and "recovery code" in html
    assert "mfa.code_delivery_failed" in events(app)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(OneTimeCode.id))) == 0


def test_method_downgrade_by_tampering_is_refused(
    app, client, auth, make_user, enrol_totp, set_policy, mailbox
):
    set_policy(mode="required", methods="totp")
    user_id = make_user(NURSE)
    enrol_totp(user_id)
    with app.app_context():
        db.session.add(MfaFactor(user_id=user_id, kind="email", is_default=False, target=NURSE))
        db.session.commit()
    auth.login()
    html = client.get("/mfa/challenge").get_data(as_text=True)
    assert "Email me a code" not in html  # the policy no longer allows email
    for method in ("email", "sms", "recovery", "none", "x" * 300):
        refused = auth.post("/mfa/challenge/method", {"method": method}, page="/mfa/challenge")
        assert refused.status_code == 403, method
    assert mailbox.to(NURSE) == []
    # The code form has no method field to edit: a posted one is ignored.
    assert auth.verify_totp("123456", method="email").status_code == 422
    assert "mfa.method_refused" in events(app)


def test_switching_to_another_enrolled_method(
    app, client, auth, make_user, enrol_totp, set_policy, mailbox
):
    set_policy(mode="required", methods="totp,email")
    user_id = make_user(NURSE)
    enrol_totp(user_id)
    with app.app_context():
        db.session.add(MfaFactor(user_id=user_id, kind="email", is_default=False, target=NURSE))
        db.session.commit()
    with time_machine.travel(T0, tick=False):
        auth.login()
        assert "Email me a code instead" in client.get("/mfa/challenge").get_data(as_text=True)
        switched = auth.post("/mfa/challenge/method", {"method": "email"}, page="/mfa/challenge")
        assert switched.headers["Location"] == "/mfa/challenge"
        assert auth.verify_totp(last_code(mailbox)).headers["Location"] == "/"


def test_admin_cannot_enrol_email_or_sms_by_default(client, auth, make_user, set_policy):
    set_policy(mode="required", methods="totp,email,sms")
    make_user("boss@clinic.example", role="Administrator")
    auth.login("boss@clinic.example")
    html = client.get("/mfa/setup").get_data(as_text=True)
    assert 'value="email"' not in html and 'value="sms"' not in html
    for method in ("email", "sms"):
        assert auth.post("/mfa/setup", {"method": method}).status_code == 422
    assert client.get("/mfa/setup/email").headers["Location"] == "/mfa/setup"


def test_admin_may_when_the_policy_allows(client, auth, make_user, set_policy):
    set_policy(mode="required", methods="totp,email", admins_app_only=False)
    make_user("boss@clinic.example", role="Administrator")
    auth.login("boss@clinic.example")
    assert auth.post("/mfa/setup", {"method": "email"}).headers["Location"] == "/mfa/setup/email"


def test_email_wizard_reenters_the_address(app, client, auth, make_user, set_policy, mailbox):
    set_policy(mode="required", methods="totp,email")
    make_user(NURSE)
    with time_machine.travel(T0, tick=False):
        auth.login()
        page = client.get("/mfa/setup").get_data(as_text=True)
        assert "Weaker than an app" in page and "Recommended" in page
        auth.post("/mfa/setup", {"method": "email"})
        wrong = auth.post("/mfa/setup/email", {"email": "nurse@elsewhere.example"})
        assert (
            wrong.status_code == 422
            and "not the email address on your account" in wrong.get_data(as_text=True)
        )
        assert mailbox.to("nurse@elsewhere.example") == []
        assert (
            auth.post("/mfa/setup/email", {"email": " Nurse@Clinic.example "}).headers["Location"]
            == "/mfa/setup/email/code"
        )
        assert "Step 3 of 5" in client.get("/mfa/setup/email/code").get_data(as_text=True)
        done = auth.post("/mfa/setup/email/code", {"code": last_code(mailbox)})
        assert done.headers["Location"] == "/mfa/setup/recovery-codes"
        assert client.get("/").status_code == 200
    with app.app_context():
        factor = db.session.scalar(sa.select(MfaFactor))
        assert (factor.kind, factor.target, factor.is_default) == ("email", NURSE, True)


@pytest.mark.parametrize("to_profile", [True, False], ids=["asked", "not-asked"])
def test_sms_wizard_with_a_new_number(
    app, client, auth, make_user, set_policy, sms_inbox, mailbox, to_profile
):
    """The profile's number changes only when the person asks and proves it, and they are
    emailed; otherwise only the factor uses the new number."""
    set_policy(mode="required", methods="totp,sms")
    user_id = make_user(NURSE, mobile_number=MOBILE)
    new = "+61498765432"
    with time_machine.travel(T0, tick=False):
        auth.login()
        auth.post("/mfa/setup", {"method": "sms"})
        page = client.get("/mfa/setup/sms").get_data(as_text=True)
        assert "Send SMS to 04******78" in page
        assert "Also make this the mobile number on my profile" in page
        bad = auth.post("/mfa/setup/sms", {"number": "12"})
        assert bad.status_code == 422
        landline = auth.post("/mfa/setup/sms", {"number": "(02) 9876 5432"})
        assert landline.status_code == 422 and "mobile" in landline.get_data(as_text=True)
        asked = {"to_profile": "y"} if to_profile else {}
        assert auth.post("/mfa/setup/sms", {"number": "0498 765 432", **asked}).status_code == 303
        assert sms_inbox.to(MOBILE) == []
        with app.app_context():
            assert db.session.get(User, user_id).mobile_number == MOBILE  # not until proven
        assert (
            auth.post("/mfa/setup/sms/code", {"code": last_sms(sms_inbox, new)}).status_code == 303
        )
    with app.app_context():
        assert db.session.get(User, user_id).mobile_number == (new if to_profile else MOBILE)
        assert db.session.scalar(sa.select(MfaFactor.target)) == new
    notices = [m["Subject"] for m in mailbox.to(NURSE)]
    assert ("The mobile number on your account was changed" in notices) is to_profile


def test_codes_are_never_stored_or_logged(app, client, auth, email_nurse, mailbox, caplog):
    from tests.test_secrets import dump_everything

    with time_machine.travel(T0, tick=False):
        auth.login()
        code = last_code(mailbox)
        dump = dump_everything(app)
        assert code not in dump
        assert auth.verify_totp(code).headers["Location"] == "/"
    assert all(code not in r.getMessage() for r in caplog.records)


def test_wizard_resend_has_a_plain_button_without_javascript(client, auth, make_user, set_policy):
    set_policy(mode="required", methods="totp,email")
    make_user(NURSE)
    with time_machine.travel(T0, tick=False):
        auth.login()
        auth.post("/mfa/setup", {"method": "email"})
        auth.post("/mfa/setup/email", {"email": NURSE})
        html = client.get("/mfa/setup/email/code").get_data(as_text=True)
        assert 'data-countdown="60"' in html and "<noscript>" in html
        assert "/mfa/setup/email/resend" in html
        early = auth.post("/mfa/setup/email/resend", page="/mfa/setup/email/code")
        assert early.status_code == 429 and "Please wait" in early.get_data(as_text=True)
