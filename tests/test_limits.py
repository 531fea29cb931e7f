"""Guessing limits that hold under concurrency, malformed codes, locks and addresses (FAC-6).

"Compared" is counted from the audit log: ``mfa.code_failed`` is written only for a wrong code
whose try was counted, never for one the gate refused (services/wrong_codes.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask

from models import (
    AuditEvent,
    MfaFactor,
    OneTimeCode,
    RecoveryCode,
    SignInThrottle,
    User,
    UserSession,
    db,
)
from services import crypto
from tests.conftest import AuthActions, make_app, release_together

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
NURSE = "nurse@clinic.example"


@pytest.fixture
def nurse(make_user, enrol_totp, set_policy):
    set_policy(mode="required", methods="totp,email")
    user_id = make_user(NURSE)
    secret, _ = enrol_totp(user_id)
    return user_id, secret


def count(app: Flask, event: str) -> int:
    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.event == event)
        )


def test_twenty_wrong_codes_at_once_into_one_sign_in_compare_at_most_five(database_url, app, nurse):
    """One pending sign-in, its cookie shared by 20 requests from two app instances (two
    workers with their own connection pools), all released at a barrier."""
    other = make_app(database_url)
    browser = AuthActions(app.test_client())
    with time_machine.travel(T0, tick=False):
        browser.login()
        token = browser.csrf_token("/mfa/challenge")
        cookie_name = app.config["SESSION_COOKIE_NAME"]
        cookie = browser.client.get_cookie(cookie_name).value
        clients = []
        for i in range(20):
            c = (app if i % 2 else other).test_client()
            c.set_cookie(cookie_name, cookie)
            clients.append(c)
        statuses = release_together(
            [
                lambda c=c: c.post("/mfa/challenge", data={"csrf_token": token, "code": "000000"})
                for c in clients
            ]
        )
    compared = count(app, "mfa.code_failed")
    assert compared == 5, (compared, statuses)
    assert statuses.count(422) == 4, statuses  # the fifth ends the sign-in: 303
    with app.app_context():
        row = db.session.scalar(sa.select(UserSession))
        assert (row.state, row.end_reason, row.failed_codes) == ("ended", "too_many_codes", 5)
        assert db.session.get(User, nurse[0]).mfa_failed_attempts == 5
    with other.app_context():
        db.engine.dispose()


def test_one_wrong_code_in_each_of_twenty_sign_ins_compares_ten_then_locks(
    database_url, app, nurse, mailbox
):
    other = make_app(database_url)
    with time_machine.travel(T0, tick=False):
        posts = []
        for i in range(20):
            b = AuthActions((app if i % 2 else other).test_client())
            b.login()
            token = b.csrf_token("/mfa/challenge")
            posts.append(
                lambda b=b, token=token: b.client.post(
                    "/mfa/challenge", data={"csrf_token": token, "code": "000000"}
                )
            )
        statuses = release_together(posts)
    assert count(app, "mfa.code_failed") == 10, statuses
    assert count(app, "mfa.locked") == 1
    # The tenth locked the factor (303: its sign-in ended); the others were refused unread.
    assert statuses.count(429) == 10 and statuses.count(303) == 1, statuses
    with app.app_context():
        user = db.session.get(User, nurse[0])
        assert (user.mfa_failed_attempts, user.mfa_lockouts) == (10, 1)
        assert user.mfa_locked_until == T0 + timedelta(minutes=15)
    assert len(mailbox.to(NURSE)) == 1
    with other.app_context():
        db.engine.dispose()


@pytest.mark.parametrize(
    "data",
    [
        {"code": ""},
        {},
        {"code": "1" * 100},
        {"code[]": ["a", "b"]},
        {"code": ["123456", "654321"]},
    ],
    ids=["empty", "missing", "100-digits", "array", "twice"],
)
def test_five_malformed_codes_end_a_pending_sign_in(app, client, auth, nurse, data):
    with time_machine.travel(T0, tick=False):
        auth.login()
        token = auth.csrf_token("/mfa/challenge")
        for _ in range(4):
            response = client.post("/mfa/challenge", data={"csrf_token": token, **data})
            assert response.status_code == 422
        ended = client.post("/mfa/challenge", data={"csrf_token": token, **data})
        assert ended.status_code == 303 and ended.headers["Location"] == "/sign-in"
        assert "Too many wrong codes" in client.get("/sign-in").get_data(as_text=True)
    assert count(app, "mfa.code_failed") == 5


def test_the_right_code_after_four_wrong_still_signs_in(app, client, auth, nurse):
    _, secret = nurse
    with time_machine.travel(T0, tick=False):
        auth.login()
        for _ in range(4):
            assert auth.verify_totp("").status_code == 422
        assert auth.verify_totp(pyotp.TOTP(secret).at(T0)).headers["Location"] == "/"
    with app.app_context():
        assert db.session.get(User, nurse[0]).mfa_failed_attempts == 0


def test_no_code_is_sent_to_a_locked_user(app, client, auth, make_user, set_policy, mailbox):
    set_policy(mode="required", methods="totp,email")
    user_id = make_user(NURSE)
    with app.app_context():
        db.session.add(MfaFactor(user_id=user_id, kind="email", is_default=True, target=NURSE))
        db.session.add(
            MfaFactor(user_id=user_id, kind="totp", secret_encrypted=crypto.encrypt("A" * 32))
        )
        user = db.session.get(User, user_id)
        user.mfa_failed_attempts, user.mfa_lockouts = 10, 1
        user.mfa_locked_until = T0 + timedelta(minutes=15)
        db.session.commit()
    with time_machine.travel(T0 + timedelta(minutes=3), tick=False):
        assert auth.login().headers["Location"] == "/mfa/challenge"
        page = client.get("/mfa/challenge").get_data(as_text=True)
        assert "locked for 12 more minutes" in page
        assert "we sent" not in page.lower()
        # Neither switching to the email method nor asking again sends one.
        auth.post("/mfa/challenge/method", {"method": "email"}, page="/mfa/challenge")
        auth.post("/mfa/challenge/resend", page="/mfa/challenge")
    assert mailbox.to(NURSE) == []
    assert count(app, "mfa.code_sent") == 0


@pytest.mark.parametrize("kind", ["totp", "email", "recovery"])
def test_a_right_code_of_any_kind_is_refused_while_locked_and_not_spent(
    app, client, auth, make_user, enrol_totp, set_policy, mailbox, kind
):
    """Every kind spends its code behind the same gate: a locked user's right code neither
    signs in nor is used up, and the refused try is not counted."""
    set_policy(mode="required", methods="totp,email")
    user_id = make_user(NURSE)
    secret, recovery_codes = enrol_totp(user_id, with_recovery=True)
    if kind == "email":
        with app.app_context():
            db.session.execute(sa.update(MfaFactor).values(is_default=False))
            db.session.add(MfaFactor(user_id=user_id, kind="email", is_default=True, target=NURSE))
            db.session.commit()
    with time_machine.travel(T0, tick=False) as clock:
        auth.login()
        if kind == "email":
            code = re.search(r"\b(\d{6})\b", mailbox.text(mailbox.to(NURSE)[-1])).group(1)
        else:
            code = pyotp.TOTP(secret).at(T0) if kind == "totp" else recovery_codes[0]
        with app.app_context():
            user = db.session.get(User, user_id)
            user.mfa_failed_attempts, user.mfa_lockouts = 10, 1
            user.mfa_locked_until = T0 + timedelta(minutes=2)
            db.session.commit()
        path = "/mfa/challenge/recovery" if kind == "recovery" else "/mfa/challenge"
        refused = auth.post(path, {"code": code})
        assert refused.status_code == 429
        assert "Your sign-in codes are locked for 2 more minutes." in refused.get_data(as_text=True)
        with app.app_context():
            user = db.session.get(User, user_id)
            assert (user.mfa_failed_attempts, user.mfa_lockouts) == (10, 1)
            assert db.session.scalar(sa.select(sa.func.max(MfaFactor.last_step))) == 0
            assert (
                db.session.scalar(
                    sa.select(sa.func.count()).where(RecoveryCode.used_at.is_not(None))
                )
                == 0
            )
            assert (
                db.session.scalar(
                    sa.select(sa.func.count()).where(OneTimeCode.used_at.is_not(None))
                )
                == 0
            )
        assert count(app, "mfa.code_failed") == 0
        clock.shift(timedelta(minutes=2, seconds=1))
        if kind == "totp":
            code = pyotp.TOTP(secret).at(T0 + timedelta(minutes=2, seconds=1))
        # The same email or recovery code, kept through the lock, now signs in.
        assert auth.post(path, {"code": code}).headers["Location"] == "/"
    with app.app_context():
        user = db.session.get(User, user_id)
        assert (user.mfa_failed_attempts, user.mfa_lockouts, user.mfa_locked_until) == (0, 0, None)


def test_the_51st_wrong_code_from_one_address_is_refused(app, make_user, enrol_totp, set_policy):
    """Six accounts, nine wrong codes each (one short of their own lock), one address."""
    set_policy(mode="required")
    emails = [f"user{i}@clinic.example" for i in range(6)]
    for email in emails:
        enrol_totp(make_user(email))
    browser = AuthActions(app.test_client())
    sent = 0
    refused = None
    with time_machine.travel(T0, tick=False):
        for email in emails:
            for tries in (5, 4):
                browser.login(email)
                for _ in range(tries):
                    response = browser.verify_totp("000000")
                    if response.status_code == 429:
                        refused = response
                        break
                    sent += 1
                if refused:
                    break
                browser.logout()  # a pending sign-in keeps its browser on its step
            if refused:
                break
    assert sent == 50 and refused is not None
    assert int(refused.headers["Retry-After"]) == 15 * 60
    assert "from your network" in refused.get_data(as_text=True)
    assert count(app, "mfa.code_failed") == 50
    with app.app_context():
        row = db.session.get(SignInThrottle, "codes-ip:127.0.0.1")
        assert row.failures == 50 and row.blocked_until == T0 + timedelta(minutes=15)


def test_the_address_limit_ends_with_its_window(app, make_user, enrol_totp, set_policy):
    set_policy(mode="required")
    user_id = make_user(NURSE)
    secret, _ = enrol_totp(user_id)
    with app.app_context():
        db.session.add(
            SignInThrottle(
                key="codes-ip:127.0.0.1",
                failures=50,
                last_failure_at=T0,
                blocked_until=T0 + timedelta(minutes=15),
            )
        )
        db.session.commit()
    browser = AuthActions(app.test_client())
    with time_machine.travel(T0 + timedelta(minutes=14), tick=False):
        browser.login()
        blocked = browser.verify_totp(pyotp.TOTP(secret).at(T0 + timedelta(minutes=14)))
        assert blocked.status_code == 429 and blocked.headers["Retry-After"] == "60"
    later = T0 + timedelta(minutes=15, seconds=1)
    with time_machine.travel(later, tick=False):
        browser.login()
        assert browser.verify_totp(pyotp.TOTP(secret).at(later)).headers["Location"] == "/"


def test_every_429_says_when_to_retry(app, client, auth, nurse, set_policy, make_user):
    """Password throttle, locked factor: each 429 carries Retry-After."""
    with time_machine.travel(T0, tick=False):
        for _ in range(5):
            auth.login(password="not the password at all")
        throttled = auth.login(password="not the password at all")
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    with app.app_context():
        user = db.session.get(User, nurse[0])
        user.mfa_locked_until = T0 + timedelta(hours=2)
        db.session.commit()
    fresh = AuthActions(app.test_client())
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        fresh.login()
        locked = fresh.verify_totp("123456")
        assert locked.status_code == 429 and locked.headers["Retry-After"] == "3600"
