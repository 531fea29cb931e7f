"""The sign-in challenge (AUTH-2, AUTH-3, FAC-1, FAC-5, FAC-6)."""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from models import AuditEvent, MfaFactor, User, UserSession, db
from services import totp
from tests.conftest import PASSWORD, AuthActions, make_app

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def nurse(make_user, enrol_totp, set_policy):
    set_policy(mode="required")
    user_id = make_user()
    secret, codes = enrol_totp(user_id, with_recovery=True)
    return user_id, secret, codes


def code_at(secret: str, when: datetime) -> str:
    return pyotp.TOTP(secret).at(when)


def session_rows(app) -> list[UserSession]:
    with app.app_context():
        return list(db.session.scalars(sa.select(UserSession).order_by(UserSession.id)))


def test_password_then_code_signs_in(app, client, auth, nurse):
    _, secret, _ = nurse
    with time_machine.travel(T0, tick=False):
        first = auth.login()
        assert first.status_code == 303 and first.headers["Location"] == "/mfa/challenge"
        assert client.get("/").headers["Location"] == "/mfa/challenge"  # not signed in yet
        page = client.get("/mfa/challenge").get_data(as_text=True)
        assert 'autocomplete="one-time-code"' in page and 'inputmode="numeric"' in page
        done = auth.verify_totp(code_at(secret, T0))
        assert done.status_code == 303 and done.headers["Location"] == "/"
        assert client.get("/").status_code == 200
    [row] = session_rows(app)
    assert (row.state, row.mfa_method) == ("active", "totp")


def test_pasted_code_with_spaces_is_accepted(client, auth, nurse):
    _, secret, _ = nurse
    with time_machine.travel(T0, tick=False):
        auth.login()
        code = code_at(secret, T0)
        assert auth.verify_totp(f" {code[:3]} {code[3:]} ").status_code == 303


def test_session_id_changes_at_each_step(app, client, auth, nurse):
    _, secret, _ = nurse
    name = app.config["SESSION_COOKIE_NAME"]
    with time_machine.travel(T0, tick=False):
        client.get("/sign-in")
        before = client.get_cookie(name).value
        auth.login()
        pending = client.get_cookie(name).value
        auth.verify_totp(code_at(secret, T0))
        after = client.get_cookie(name).value
        assert len({before, pending, after}) == 3
        # The pending cookie is worthless once the sign-in completed.
        other = app.test_client()
        other.set_cookie(name, pending)
        assert other.get("/").headers["Location"].startswith("/sign-in")
        assert other.get("/mfa/challenge").headers["Location"] == "/sign-in"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/", {}),
        ("/", {"HX-Request": "true"}),
        ("/sign-in", {}),
        ("/mfa/setup", {}),
        ("/mfa/setup/app", {"HX-Request": "true"}),
        ("/mfa/setup/recovery-codes", {}),
        ("/account", {}),
        ("/does-not-exist", {}),
    ],
)  # /admin answers 404 even to a pending sign-in: tests/test_admin_access.py
def test_pending_sign_in_reaches_nothing_but_its_step(client, auth, nurse, path, headers):
    auth.login()
    response = client.get(path, headers=headers)
    if headers.get("HX-Request"):
        assert response.status_code == 204 and response.headers["HX-Redirect"] == "/mfa/challenge"
    else:
        assert response.status_code == 303 and response.headers["Location"] == "/mfa/challenge"


def test_pending_sign_in_cannot_post_elsewhere(client, auth, nurse):
    auth.login()
    token = auth.csrf_token("/mfa/challenge")
    response = client.post("/mfa/setup", data={"csrf_token": token, "method": "totp"})
    assert response.headers["Location"] == "/mfa/challenge"


def test_pending_sign_in_expires(client, auth, nurse):
    _, secret, _ = nurse
    with time_machine.travel(T0, tick=False) as clock:
        auth.login()
        clock.shift(timedelta(minutes=5, seconds=1))
        response = client.get("/mfa/challenge")
        assert response.headers["Location"] == "/sign-in"
        assert "took too long" in client.get("/sign-in").get_data(as_text=True)
        assert (
            auth.verify_totp(code_at(secret, T0 + timedelta(minutes=5))).headers["Location"]
            == "/sign-in"
        )
        assert client.get("/").headers["Location"].startswith("/sign-in")


def test_pending_sign_in_is_bound_to_its_browser_and_user(
    app, client, auth, nurse, make_user, enrol_totp
):
    _, secret, _ = nurse
    other_id = make_user("doctor@clinic.example")
    other_secret, _ = enrol_totp(other_id)
    with time_machine.travel(T0, tick=False):
        auth.login()
        # Another browser with the nurse's CSRF token has no pending sign-in at all.
        stranger = app.test_client()
        token = auth.csrf_token("/mfa/challenge")
        refused = stranger.post(
            "/mfa/challenge", data={"csrf_token": token, "code": code_at(secret, T0)}
        )
        assert refused.status_code == 400  # the token is bound to the nurse's session
        assert "This form had expired or came from somewhere else, so nothing was sent." in (
            refused.get_data(True)
        )
        assert stranger.get("/").status_code == 303
        # With a token of its own it gets past CSRF and still has no pending sign-in: the
        # right code for the nurse is not looked at, and the stranger is sent to sign in.
        own = AuthActions(stranger).csrf_token("/sign-in")
        sent_away = stranger.post(
            "/mfa/challenge", data={"csrf_token": own, "code": code_at(secret, T0)}
        )
        assert sent_away.status_code == 303 and sent_away.headers["Location"] == "/sign-in"
        # Naming another user in the request changes nothing; their code is not the nurse's.
        wrong_user = auth.verify_totp(
            code_at(other_secret, T0), user_id=str(other_id), email="doctor@clinic.example"
        )
        assert wrong_user.status_code == 422
        assert auth.verify_totp(code_at(secret, T0)).status_code == 303
    rows = [r for r in session_rows(app) if r.state == "active"]
    assert [r.user_id for r in rows] == [nurse[0]]


def test_a_code_works_once(client, auth, nurse):
    _, secret, _ = nurse
    with time_machine.travel(T0, tick=False):
        auth.login()
        code = code_at(secret, T0)
        assert auth.verify_totp(code).status_code == 303
        auth.logout()
        auth.login()
        assert auth.verify_totp(code).status_code == 422


def test_an_earlier_code_is_refused_after_a_later_one(client, auth, nurse):
    _, secret, _ = nurse
    with time_machine.travel(T0, tick=False):
        auth.login()
        assert auth.verify_totp(code_at(secret, T0 + timedelta(seconds=30))).status_code == 303
        auth.logout()
        auth.login()
        assert auth.verify_totp(code_at(secret, T0)).status_code == 422


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-60, False), (-30, True), (0, True), (30, True), (60, False)],
)
def test_one_step_of_drift_each_way(client, auth, nurse, offset, accepted):
    _, secret, _ = nurse
    with time_machine.travel(T0, tick=False):
        auth.login()
        response = auth.verify_totp(code_at(secret, T0 + timedelta(seconds=offset)))
        assert (response.status_code == 303) is accepted


def test_rfc6238_sha1_vectors_through_our_verification():
    """RFC 6238 appendix B, SHA-1, truncated to our 6 digits (the low digits of the 8)."""
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert secret == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    vectors = {
        59: "94287082",
        1111111109: "07081804",
        1111111111: "14050471",
        1234567890: "89005924",
        2000000000: "69279037",
        20000000000: "65353130",
    }
    for when, eight in vectors.items():
        code = eight[-6:]
        step = totp.matching_step(secret, code, after_step=0, now=when)
        assert step == when // 30, when
        assert totp.matching_step(secret, code, after_step=step, now=when) is None


def test_malformed_codes_count_as_wrong(app, client, auth, nurse):
    auth.login()
    statuses = []
    for bad in ["12345", "1234567", "abcdef", "\uff11\uff12\uff13\uff14\uff15\uff16", "12 34 5x"]:
        response = auth.verify_totp(bad)
        statuses.append(response.status_code)
        if response.status_code == 422:
            assert "That code did not work. Check the newest code in your app and try again." in (
                response.get_data(as_text=True)
            )
    # The fifth wrong try ends the pending sign-in: back to the password.
    assert statuses == [422, 422, 422, 422, 303]
    assert response.headers["Location"] == "/sign-in"
    with app.app_context():
        user = db.session.get(User, nurse[0])
        assert user.mfa_failed_attempts == 5


def test_five_wrong_codes_end_the_pending_sign_in(app, client, auth, nurse):
    _, secret, _ = nurse
    with time_machine.travel(T0, tick=False):
        auth.login()
        for _ in range(4):
            assert auth.verify_totp("000000").status_code == 422
        ended = auth.verify_totp("000000")
        assert ended.status_code == 303 and ended.headers["Location"] == "/sign-in"
        # Even the right code is no use now: the password is needed again.
        assert auth.verify_totp(code_at(secret, T0)).headers["Location"] == "/sign-in"
        assert client.get("/").headers["Location"].startswith("/sign-in")
    assert session_rows(app)[0].end_reason == "too_many_codes"


def _fail_codes(auth: AuthActions, count: int) -> None:
    for i in range(count):
        if i % 5 == 0:
            auth.login()
        auth.verify_totp("000000")


def test_ten_wrong_codes_lock_the_factor_and_email_the_user(app, client, auth, nurse, mailbox):
    _, secret, _ = nurse
    with time_machine.travel(T0, tick=False) as clock:
        _fail_codes(auth, 10)
        [mail] = mailbox.to("nurse@clinic.example")
        assert "wrong sign-in code" in mail["Subject"] or "wrongly" in mail["Subject"]
        assert "locked until" in mailbox.text(mail)
        auth.login()
        locked = auth.verify_totp(code_at(secret, T0))
        assert locked.status_code == 429
        assert "locked for 15 more minutes" in locked.get_data(as_text=True)
        clock.shift(timedelta(minutes=15, seconds=1))
        auth.login()
        assert (
            auth.verify_totp(code_at(secret, T0 + timedelta(minutes=15, seconds=1))).status_code
            == 303
        )
    with app.app_context():
        user = db.session.get(User, nurse[0])
        assert (user.mfa_failed_attempts, user.mfa_locked_until) == (0, None)
        assert (
            db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.event == "mfa.locked"))
            == 1
        )


def test_lock_doubles_and_needs_an_admin_after_100(app, client, auth, nurse, runner):
    user_id, secret, _ = nurse
    with time_machine.travel(T0, tick=False) as clock:
        _fail_codes(auth, 10)
        clock.shift(timedelta(minutes=16))
        _fail_codes(auth, 10)
        with app.app_context():
            user = db.session.get(User, user_id)
            assert user.mfa_locked_until - (T0 + timedelta(minutes=16)) == timedelta(minutes=30)
            # As after nine lockouts served: the next wrong code is the 100th in a row.
            user.mfa_failed_attempts, user.mfa_lockouts = 99, 9
            user.mfa_locked_until = None
            db.session.commit()
        auth.login()
        auth.verify_totp("000000")
        clock.shift(timedelta(days=30))
        auth.login()
        now = T0 + timedelta(days=30, minutes=16)
        response = auth.verify_totp(code_at(secret, now))
        assert response.status_code == 429
        assert "administrator to unlock them" in response.get_data(as_text=True)
        result = runner.invoke(args=["users", "unlock", "nurse@clinic.example"])
        assert result.exit_code == 0, result.output
        with app.app_context():
            assert db.session.get(User, user_id).mfa_failed_attempts == 0
        auth.login()
        assert auth.verify_totp(code_at(secret, now)).status_code == 303


def test_wrong_passwords_never_lock_the_second_factor(app, client, auth, nurse):
    _, secret, _ = nurse
    with time_machine.travel(T0, tick=False) as clock:
        for _ in range(12):
            auth.login(password="wrong password again")
            clock.shift(timedelta(minutes=20))  # past any password delay
        auth.login()
        assert auth.verify_totp(code_at(secret, T0 + timedelta(minutes=240))).status_code == 303
    with app.app_context():
        assert db.session.get(User, nurse[0]).mfa_failed_attempts == 0


def test_code_limits_hold_across_two_app_instances(database_url, app, nurse, mailbox):
    _, secret, _ = nurse
    other = make_app(database_url)
    browsers = [AuthActions(app.test_client()), AuthActions(other.test_client())]
    with time_machine.travel(T0, tick=False):
        for i in range(10):
            b = browsers[(i // 5) % 2]
            if i % 5 == 0:
                b.login()
            b.verify_totp("000000")
        assert len(mailbox.to("nurse@clinic.example")) == 1
        browsers[0].login()
        assert browsers[0].verify_totp(code_at(secret, T0)).status_code == 429
    with other.app_context():
        db.engine.dispose()


def test_twenty_concurrent_requests_with_one_code_give_one_success(database_url, app, nurse):
    """Twenty browsers each hold a pending sign-in; all submit the same valid code at once."""
    _, secret, _ = nurse
    with time_machine.travel(T0, tick=False):
        browsers = []
        for _ in range(20):
            b = AuthActions(app.test_client())
            b.login()
            browsers.append((b, b.csrf_token("/mfa/challenge")))
        code = code_at(secret, T0)
        barrier = threading.Barrier(20)
        results: list[str] = []

        def submit(browser: AuthActions, token: str) -> None:
            barrier.wait(timeout=10)
            r = browser.client.post("/mfa/challenge", data={"csrf_token": token, "code": code})
            results.append("signed_in" if r.headers.get("Location") == "/" else str(r.status_code))

        threads = [threading.Thread(target=submit, args=pair) for pair in browsers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert len(results) == 20
    assert results.count("signed_in") == 1, results
    signed_in = [r for r in session_rows(app) if r.state == "active"]
    assert len(signed_in) == 1
    with app.app_context():
        factor = db.session.scalar(sa.select(MfaFactor))
        assert factor.last_step == int(T0.timestamp()) // 30


def test_recovery_code_signs_in_once_and_notifies(app, client, auth, nurse, mailbox):
    _, _, codes = nurse
    auth.login()
    page = client.get("/mfa/challenge/recovery")
    assert page.status_code == 200
    used = codes[0].lower()
    response = auth.post("/mfa/challenge/recovery", {"code": f"{used[:5]}-{used[5:]}"})
    assert response.status_code == 303 and response.headers["Location"] == "/"
    [mail] = mailbox.to("nurse@clinic.example")
    assert "recovery code" in mail["Subject"] and "9 recovery codes left" in mailbox.text(mail)
    auth.logout()
    auth.login()
    again = auth.post("/mfa/challenge/recovery", {"code": codes[0]})
    assert again.status_code == 422
    assert auth.post("/mfa/challenge/recovery", {"code": codes[1]}).status_code == 303
    with app.app_context():
        events = list(db.session.scalars(sa.select(AuditEvent.event)))
    assert events.count("sign_in.succeeded") == 2


def test_every_decision_is_audited(app, client, auth, nurse):
    _, secret, _ = nurse
    with time_machine.travel(T0, tick=False):
        auth.login()
        auth.verify_totp("000000")
        auth.verify_totp(code_at(secret, T0))
    with app.app_context():
        rows = list(db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)))
    assert [r.event for r in rows] == [
        "sign_in.password_ok",
        "mfa.code_failed",
        "sign_in.succeeded",
    ]
    assert rows[0].details["next"] == "challenge"
    assert rows[2].details["method"] == "totp"


def statements_of(app, request) -> tuple[object, list[str]]:
    """The response to ``request()`` and the SQL it sent, each as its verb and table."""
    sent: list[str] = []

    def log(_conn, _cursor, statement, *_args) -> None:
        words = statement.split()
        table = words[words.index("FROM") + 1] if words[0] == "SELECT" else words[1]
        sent.append(f"{words[0]} {words[2] if table == 'INTO' else table}")

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", log)
    try:
        return request(), sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", log)


def test_a_right_app_code_costs_four_statements(app, client, auth, nurse):
    """PERF-2: the session row (with the user, their default factor and the policy), the
    guarded spend, the promotion and the audit row; a run of wrong codes adds its clearing."""
    _, secret, _ = nurse

    def sign_in_at(when: datetime) -> list[str]:
        token = auth.csrf_token("/mfa/challenge")
        data = {"csrf_token": token, "code": code_at(secret, when)}
        response, sent = statements_of(app, lambda: client.post("/mfa/challenge", data=data))
        assert response.headers["Location"] == "/"
        return sent

    spend, promote = "UPDATE mfa_factors", "UPDATE user_sessions"
    with time_machine.travel(T0, tick=False) as clock:
        auth.login()
        assert sign_in_at(T0) == ["SELECT user_sessions", spend, promote, "INSERT audit_events"]
        auth.logout()
        clock.shift(timedelta(minutes=1))
        auth.login()
        assert auth.verify_totp("000000").status_code == 422
        assert sign_in_at(T0 + timedelta(minutes=1)) == [
            "SELECT user_sessions",
            spend,
            promote,
            "UPDATE users",
            "INSERT audit_events",
        ]


def test_a_right_password_costs_five_statements(app, client, auth, nurse):
    """PERF-2: the throttle rows, the person with the policy beside them, their factors, the
    audit row and the pending sign-in."""
    token = auth.csrf_token()
    form = {"csrf_token": token, "email": "nurse@clinic.example", "password": PASSWORD}
    response, sent = statements_of(app, lambda: client.post("/sign-in", data=form))
    assert response.headers["Location"] == "/mfa/challenge"
    assert sent == [
        "SELECT sign_in_throttles",
        "SELECT users",
        "SELECT mfa_factors",
        "INSERT audit_events",
        "INSERT user_sessions",
    ]
