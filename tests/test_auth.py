"""Password sign-in, throttling, sign-out and session lifetimes (AUTH-1, AUTH-3, AUTH-6)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from blueprints.auth.views import GENERIC_ERROR
from models import AuditEvent, SignInThrottle, UserSession, db
from services import throttle
from tests.conftest import AuthActions, make_app


def events(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEvent.event).order_by(AuditEvent.id)))


def test_sign_in_success_opens_a_server_session(app, client, auth, make_user):
    make_user()
    response = auth.login()
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert "nurse@clinic.example" in home.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(UserSession.id))) == 1
    assert "sign_in.succeeded" in events(app)


def test_email_is_matched_case_insensitively(client, auth, make_user):
    make_user()
    assert auth.login(email="  Nurse@Clinic.EXAMPLE ").status_code == 303


def _comparable(response) -> str:
    body = response.get_data(as_text=True)
    body = body.replace("nobody@clinic.example", "X").replace("nurse@clinic.example", "X")
    return re.sub(r'value="[^"]{40,}"|content="[^"]{40,}"', "", body)


def test_unknown_email_and_wrong_password_look_the_same(app, auth, make_user):
    make_user()
    wrong_password = auth.login(password="not the password at all")
    unknown_email = auth.login(email="nobody@clinic.example")
    assert wrong_password.status_code == unknown_email.status_code == 422
    # Same words, same form; only the CSRF token and the typed address differ.
    assert _comparable(wrong_password) == _comparable(unknown_email)
    assert "do not match an account" in wrong_password.get_data(as_text=True)


def test_sign_in_page_is_not_cached_and_fields_are_labelled(client):
    page = client.get("/sign-in")
    assert page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    assert '<label for="email">' in html and '<label for="password">' in html
    assert 'autocomplete="current-password"' in html


def test_disabled_account_answers_the_right_password_like_a_wrong_one(app, auth, make_user):
    """A different answer would tell a guesser the password was right; only the audit log
    keeps the difference, and the refusal counts against the address like any failure."""
    make_user(active=False)
    right = auth.login()
    wrong = auth.login(password="not the password at all")
    assert right.status_code == wrong.status_code == 422
    assert GENERIC_ERROR in right.get_data(as_text=True)
    assert _comparable(right) == _comparable(wrong)
    assert events(app) == ["sign_in.refused_inactive", "sign_in.password_failed"]
    with app.app_context():
        failures = db.session.scalar(
            sa.select(SignInThrottle.failures).where(
                SignInThrottle.key == throttle.email_key("nurse@clinic.example")
            )
        )
    assert failures == 2


def test_throttle_after_repeated_failures(app, auth, make_user):
    make_user()
    free = app.config["MFA_PASSWORD_FREE_TRIES_PER_ACCOUNT"]
    for _ in range(free):
        assert auth.login(password="wrong password here").status_code == 422
    # The next try, even with the right password, is refused without checking it.
    refused = auth.login()
    assert refused.status_code == 429
    assert "Try again in" in refused.get_data(as_text=True)
    assert "sign_in.throttled" in events(app)


def test_throttle_is_the_same_for_unknown_addresses(app, auth):
    free = app.config["MFA_PASSWORD_FREE_TRIES_PER_ACCOUNT"]
    for _ in range(free):
        auth.login(email="ghost@clinic.example", password="whatever it is")
    assert auth.login(email="ghost@clinic.example").status_code == 429


def test_throttle_holds_across_two_app_instances(database_url, app, make_user):
    """Two processes' worth of apps on one database share the counter (OPS-3)."""
    make_user()
    other = make_app(database_url)
    clients = [AuthActions(app.test_client()), AuthActions(other.test_client())]
    free = app.config["MFA_PASSWORD_FREE_TRIES_PER_ACCOUNT"]
    for i in range(free):
        assert clients[i % 2].login(password="wrong password here").status_code == 422
    assert clients[free % 2].login().status_code == 429
    assert clients[(free + 1) % 2].login().status_code == 429
    with other.app_context():
        db.engine.dispose()


def test_throttle_delay_expires_and_success_resets_the_count(app, auth, make_user):
    make_user()
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    free = app.config["MFA_PASSWORD_FREE_TRIES_PER_ACCOUNT"]
    with time_machine.travel(start, tick=False) as clock:
        for _ in range(free):
            auth.login(password="wrong password here")
        assert auth.login().status_code == 429
        clock.shift(timedelta(seconds=2))
        assert auth.login().status_code == 303
    with app.app_context():
        keys = list(db.session.scalars(sa.select(SignInThrottle.key)))
    assert not any(k.startswith("email:") for k in keys)


def test_hard_lock_after_100_failures_in_a_row(app, client, auth, make_user, runner):
    make_user()
    with app.app_context():
        from services import throttle

        db.session.add(
            SignInThrottle(
                key=throttle.email_key("nurse@clinic.example"),
                failures=app.config["MFA_PASSWORD_HARD_LOCK_AFTER"],
                last_failure_at=datetime(2020, 1, 1, tzinfo=UTC),
            )
        )
        db.session.commit()
    refused = auth.login()
    assert refused.status_code == 429
    assert "administrator" in refused.get_data(as_text=True)
    result = runner.invoke(args=["users", "unlock", "nurse@clinic.example"])
    assert result.exit_code == 0, result.output
    assert auth.login().status_code == 303


def test_per_ip_throttle(app, auth):
    free = app.config["MFA_PASSWORD_FREE_TRIES_PER_IP"]
    for i in range(free):
        auth.login(email=f"user{i}@clinic.example", password="wrong password here")
    assert auth.login(email="fresh@clinic.example").status_code == 429


def test_logout_ends_the_session_and_old_cookie_is_refused(app, client, auth, make_user):
    make_user()
    auth.login()
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    stolen = cookie.value
    assert auth.logout().status_code == 303
    assert client.get("/").status_code == 303
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], stolen)
    replay = client.get("/")
    assert replay.status_code == 303
    assert replay.headers["Location"].startswith("/sign-in")
    with app.app_context():
        row = db.session.scalar(sa.select(UserSession))
        assert (row.state, row.token_hash, row.end_reason) == ("ended", None, "signed_out")
    assert "sign_out" in events(app)


def test_session_id_changes_at_sign_in(app, client, auth, make_user):
    make_user()
    client.get("/sign-in")
    before = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    auth.login()
    after = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    assert before != after
    # A cookie planted before sign-in carries no session token.
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], before)
    assert client.get("/").status_code == 303


@pytest.mark.parametrize(
    ("elapsed", "signed_in"),
    [(timedelta(minutes=29), True), (timedelta(minutes=31), False)],
)
def test_idle_timeout(client, auth, make_user, elapsed, signed_in):
    make_user()
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as clock:
        auth.login()
        clock.shift(elapsed)
        assert (client.get("/").status_code == 200) is signed_in


def test_activity_keeps_the_session_but_not_past_the_absolute_limit(client, auth, make_user):
    make_user()
    start = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as clock:
        auth.login()
        for _ in range(23):  # a request every 25 minutes for 9.6 hours
            clock.shift(timedelta(minutes=25))
            assert client.get("/").status_code == 200
        clock.shift(timedelta(hours=2, minutes=25))  # 12h 0m 0s + 25 min after sign-in
        expired = client.get("/")
        assert expired.status_code == 303
        follow = client.get("/sign-in")
        assert "Your session ended" in follow.get_data(as_text=True)


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/%0a/evil.example".replace("%0a", "\n"),
        "javascript:alert(1)",
        "http:/evil.example",
        " //evil.example",
    ],
)
def test_next_off_site_is_ignored(auth, make_user, target):
    make_user()
    response = auth.login(next=target)
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_next_on_site_is_followed(client, auth, make_user):
    make_user()
    bounced = client.get("/?tab=1")
    assert bounced.status_code == 303
    assert bounced.headers["Location"] == "/sign-in?next=/?tab%3D1"
    response = auth.login(next="/?tab=1")
    assert response.headers["Location"] == "/?tab=1"
