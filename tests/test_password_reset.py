"""Forgot password (AUTH-7): a single-use emailed link, valid 30 minutes, that never signs
anyone in and never skips or removes the second factor."""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
import time_machine

from models import AuditEvent, MfaFactor, PasswordResetToken, RememberedDevice, UserSession, db
from services import throttle
from tests.conftest import PASSWORD, AuthActions, make_app
from tests.test_secrets import dump_everything

KNOWN = "nurse@clinic.example"
UNKNOWN = "nobody@clinic.example"
NEW_PASSWORD = "a brand new long passphrase"
SENT_WORDS = (
    "If an account uses that address, we have emailed a link to reset the password. "
    "It works once, for 30 minutes."
)
T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


def events(app, name: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        query = sa.select(AuditEvent).order_by(AuditEvent.id)
        if name:
            query = query.where(AuditEvent.event == name)
        return list(db.session.scalars(query))


def ask(auth: AuthActions, email: str = KNOWN, **kw):
    """POST the forgot-password form the way a browser does, and let the response finish:
    the email goes out only once the response has been sent (closed)."""
    response = auth.post("/forgot-password", {"email": email}, **kw)
    response.get_data()
    response.close()
    return response


def link_in(mailbox, address: str = KNOWN) -> str:
    """The path of the reset link in the newest email to ``address``."""
    messages = mailbox.to(address)
    assert messages, f"no email to {address}"
    text = mailbox.text(messages[-1])
    url = re.search(r"https?://\S+/reset-password/\S+", text).group(0)
    return urlsplit(url).path


def open_link(client, path: str):
    """Open an emailed link as a browser does: the first request trades the token for state
    in the session and sends the browser to /reset-password; returns the page shown there."""
    opened = client.get(path)
    assert opened.status_code == 303
    assert opened.headers["Location"] == "/reset-password"
    assert opened.headers["Referrer-Policy"] == "no-referrer"
    return client.get("/reset-password")


def reset(auth: AuthActions, path: str, password: str = NEW_PASSWORD, confirm: str | None = None):
    """Open the link, then post the new password from the page it led to."""
    open_link(auth.client, path)
    response = auth.post("/reset-password", {"password": password, "confirm": confirm or password})
    response.get_data()
    response.close()
    return response


def _comparable(response) -> str:
    body = response.get_data(as_text=True)
    for address in (KNOWN, UNKNOWN, "gone@clinic.example"):
        body = body.replace(address, "X")
    return re.sub(r'value="[^"]{40,}"|content="[^"]{40,}"', "", body)


# --- asking for a link ---------------------------------------------------------------------


def test_sign_in_page_links_to_forgot_password(client):
    html = client.get("/sign-in").get_data(as_text=True)
    assert 'href="/forgot-password"' in html and "Forgot password?" in html


def test_forgot_password_page_and_partial_from_one_url(client):
    page = client.get("/forgot-password")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<html" in html and 'name="email"' in html and 'autocomplete="username"' in html
    assert 'action="/forgot-password"' in html and 'hx-post="/forgot-password"' in html
    partial = client.get("/forgot-password", headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert "<html" not in partial.get_data(as_text=True)
    assert 'id="forgot-password"' in partial.get_data(as_text=True)
    assert "HX-Request" in partial.headers["Vary"]


def test_same_answer_for_known_unknown_and_inactive_addresses_mail_only_for_known(
    app, auth, make_user, mailbox
):
    make_user(KNOWN)
    make_user("gone@clinic.example", active=False)
    known = ask(auth, KNOWN)
    unknown = ask(auth, UNKNOWN)
    inactive = ask(auth, "gone@clinic.example")
    assert known.status_code == unknown.status_code == inactive.status_code == 200
    assert SENT_WORDS in known.get_data(as_text=True)
    # Same words, same page; only the CSRF token and the typed address differ.
    assert _comparable(known) == _comparable(unknown) == _comparable(inactive)
    assert len(mailbox.to(KNOWN)) == 1
    assert mailbox.to(UNKNOWN) == [] and mailbox.to("gone@clinic.example") == []
    assert len(mailbox.messages) == 1
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(PasswordResetToken.id))) == 1
    assert [e.details["reason"] for e in events(app, "password_reset.refused")] == [
        "unknown_address",
        "inactive",
    ]
    assert len(events(app, "password_reset.requested")) == 1


def test_mail_goes_out_only_after_the_response(auth, make_user, mailbox):
    """A known address must not answer slower than an unknown one: the mail server is not
    talked to until the response has been sent."""
    make_user(KNOWN)
    response = auth.post("/forgot-password", {"email": KNOWN})
    assert response.status_code == 200
    assert mailbox.to(KNOWN) == []
    response.close()
    assert len(mailbox.to(KNOWN)) == 1


def test_htmx_request_gets_the_partial_with_the_same_words(auth, make_user, mailbox):
    make_user(KNOWN)
    response = ask(auth, KNOWN, headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in html and SENT_WORDS in html
    assert len(mailbox.to(KNOWN)) == 1


def test_empty_address_is_a_form_error(auth, mailbox):
    response = ask(auth, "")
    assert response.status_code == 422
    assert "Enter your email address." in response.get_data(as_text=True)
    assert mailbox.messages == []


def test_email_says_what_the_link_does(auth, make_user, mailbox):
    make_user(KNOWN)
    ask(auth, KNOWN)
    (message,) = mailbox.to(KNOWN)
    text = mailbox.text(message)
    assert re.search(r"http://localhost/reset-password/[A-Za-z0-9_-]{43}\b", text)
    assert "expires in 30 minutes and works once" in text
    assert "If you did not ask for this, ignore this email; your password stays the same." in text
    assert "-- Harbour Clinic" in text  # the standard footer
    html = message.get_body(preferencelist=("html",)).get_content()
    assert 'href="http://localhost/reset-password/' in html


def test_a_new_link_voids_the_earlier_one(auth, make_user, mailbox):
    make_user(KNOWN)
    ask(auth, KNOWN)
    first = link_in(mailbox)
    ask(auth, KNOWN)
    second = link_in(mailbox)
    assert first != second
    assert open_link(auth.client, first).status_code == 410
    assert open_link(auth.client, second).status_code == 200


def test_at_most_five_emails_an_hour(app, auth, make_user, mailbox):
    make_user(KNOWN)
    with time_machine.travel(T0, tick=False) as clock:
        responses = []
        for _ in range(6):
            responses.append(ask(auth, KNOWN))
            clock.shift(timedelta(minutes=1))
        assert len(mailbox.to(KNOWN)) == 5
        # The sixth answer is the same as the others, and the fifth link still works.
        assert _comparable(responses[5]) == _comparable(responses[0])
        assert len(events(app, "password_reset.throttled")) == 1
        assert open_link(auth.client, link_in(mailbox)).status_code == 200
        # A rolling hour: once the first request is an hour old, one more may go.
        clock.shift(timedelta(minutes=55))
        ask(auth, KNOWN)
        assert len(mailbox.to(KNOWN)) == 6


def test_mail_server_down_same_page_no_500_and_audited(database_url, app, make_user, mailbox):
    make_user(KNOWN)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    # Flask-Mail reads MAIL_PORT when the app is made, so a second app points at the dead port.
    down_app = make_app(database_url, MAIL_PORT=closed_port)
    try:
        auth = AuthActions(down_app.test_client())
        down = ask(auth, KNOWN)
        unknown = ask(auth, UNKNOWN)
        assert down.status_code == 200
        assert _comparable(down) == _comparable(unknown)
        (failed,) = events(app, "mail.failed")
        assert failed.details["template"] == "password_reset"
        assert failed.subject_id is not None and failed.ip == "127.0.0.1"
        # The undelivered link is gone: it neither works nor counts against the hourly limit.
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count(PasswordResetToken.id))) == 0
        assert mailbox.messages == []
    finally:
        with down_app.app_context():
            db.session.remove()
            db.engine.dispose()


# --- using the link ------------------------------------------------------------------------


def test_reset_form_fields_and_headers(auth, make_user, mailbox):
    make_user(KNOWN)
    ask(auth, KNOWN)
    page = open_link(auth.client, link_in(mailbox))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count('autocomplete="new-password"') == 2
    assert "At least 12 characters" in html
    assert KNOWN in html
    assert 'action="/reset-password"' in html and 'hx-post="/reset-password"' in html
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_opening_the_link_takes_the_token_out_of_the_url(app, auth, make_user, mailbox):
    """The token is traded for session state on the first request (SEC-4): the page where
    the password is chosen, its form and the cookie carry no token, and a browser that did
    not open the link gets nothing from /reset-password."""
    make_user(KNOWN)
    ask(auth, KNOWN)
    path = link_in(mailbox)
    token = path.rsplit("/", 1)[1]
    page = open_link(auth.client, path)
    assert page.status_code == 200 and page.request.path == "/reset-password"
    assert token not in page.get_data(as_text=True)
    assert page.headers["Referrer-Policy"] == "no-referrer"
    cookie = auth.client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None and token not in cookie.value
    # Another browser, without the opened link, sees the dead-link page and cannot post.
    other = AuthActions(app.test_client())
    assert other.client.get("/reset-password").status_code == 410
    assert reset_without_link(other).status_code == 410
    assert reset(auth, path).status_code == 303


def reset_without_link(auth: AuthActions):
    return auth.post(
        "/reset-password",
        {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        page="/forgot-password",
    )


def test_a_dead_link_redirects_then_answers_410(auth, make_user, mailbox):
    """Unknown, mistyped or spent: the token leaves the URL as well, and a dead link opened
    after a good one replaces it (the last link opened decides)."""
    make_user(KNOWN)
    ask(auth, KNOWN)
    good = link_in(mailbox)
    assert open_link(auth.client, good).status_code == 200
    dead = open_link(auth.client, "/reset-password/" + "A" * 43)
    assert dead.status_code == 410
    assert "This link has expired or was already used" in dead.get_data(as_text=True)
    assert dead.headers["Referrer-Policy"] == "no-referrer"
    assert reset_without_link(auth).status_code == 410
    assert open_link(auth.client, good).status_code == 200


def test_email_links_come_from_mfa_base_url_whatever_the_host(
    database_url, app, make_user, mailbox
):
    """SEC-4: the reset link and the password-changed notice point at MFA_BASE_URL, not at
    the Host the request came with, even a trusted one; an untrusted Host gets no email."""
    make_user(KNOWN)
    public = make_app(
        database_url, MFA_BASE_URL="https://mfa.clinic.example", MFA_TRUSTED_HOSTS="localhost"
    )
    try:
        auth = AuthActions(public.test_client())  # Host: localhost, a trusted name
        assert ask(auth, KNOWN).status_code == 200
        (message,) = mailbox.to(KNOWN)
        text = mailbox.text(message)
        assert re.search(r"https://mfa\.clinic\.example/reset-password/[A-Za-z0-9_-]{43}\b", text)
        assert "localhost" not in text
        html = message.get_body(preferencelist=("html",)).get_content()
        assert 'href="https://mfa.clinic.example/reset-password/' in html
        assert "localhost" not in html
        assert reset(auth, link_in(mailbox)).status_code == 303
        notice = mailbox.text(mailbox.to(KNOWN)[-1])
        assert "Sign in: https://mfa.clinic.example/sign-in" in notice
        # Host: evil.example is refused before any form is read or email sent.
        mailbox.clear()
        refused = auth.client.post(
            "/forgot-password", data={"email": KNOWN}, headers={"Host": "evil.example"}
        )
        assert refused.status_code == 400
        refused.close()
        assert mailbox.messages == []
    finally:
        with public.app_context():
            db.session.remove()
            db.engine.dispose()


def test_link_works_once_and_changes_the_password(app, client, auth, make_user, mailbox):
    make_user(KNOWN)
    ask(auth, KNOWN)
    path = link_in(mailbox)
    done = reset(auth, path)
    assert done.status_code == 303
    assert done.headers["Location"] == "/sign-in"
    assert "Your password has been changed. Sign in with your new password." in client.get(
        "/sign-in"
    ).get_data(as_text=True)
    # Second use refused, by GET and by POST.
    again = open_link(client, path)
    assert again.status_code == 410
    assert "This link has expired or was already used" in again.get_data(as_text=True)
    assert 'href="/forgot-password"' in again.get_data(as_text=True)
    assert reset(auth, path, "yet another long passphrase").status_code == 410
    # The new password works, the old one does not.
    assert auth.login(KNOWN, PASSWORD).status_code == 422
    assert auth.login(KNOWN, NEW_PASSWORD).status_code == 303
    assert [e.event for e in events(app) if e.event.startswith("password_reset.")] == [
        "password_reset.requested",
        "password_reset.completed",
    ]


def test_user_is_told_the_password_changed(auth, make_user, mailbox):
    make_user(KNOWN)
    ask(auth, KNOWN)
    reset(auth, link_in(mailbox))
    messages = mailbox.to(KNOWN)
    assert [m["Subject"] for m in messages] == ["Reset your password", "Your password was changed"]
    assert "http://localhost/sign-in" in mailbox.text(messages[-1])


def test_htmx_reset_redirects_with_hx_redirect(auth, make_user, mailbox):
    make_user(KNOWN)
    ask(auth, KNOWN)
    open_link(auth.client, link_in(mailbox))
    response = auth.post(
        "/reset-password",
        {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        headers={"HX-Request": "true"},
    )
    response.close()
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/sign-in"


def test_link_expires_after_30_minutes(auth, make_user, mailbox):
    make_user(KNOWN)
    with time_machine.travel(T0, tick=False) as clock:
        ask(auth, KNOWN)
        path = link_in(mailbox)
        clock.shift(timedelta(minutes=29, seconds=59))
        assert open_link(auth.client, path).status_code == 200
        clock.shift(timedelta(seconds=1))
        assert auth.client.get("/reset-password").status_code == 410  # the opened link too
        assert open_link(auth.client, path).status_code == 410
        assert reset(auth, path).status_code == 410
    assert auth.login(KNOWN, NEW_PASSWORD).status_code == 422


def test_reset_never_signs_in(client, auth, make_user, mailbox):
    make_user(KNOWN)
    ask(auth, KNOWN)
    reset(auth, link_in(mailbox))
    home = client.get("/")
    assert home.status_code == 303
    assert urlsplit(home.headers["Location"]).path == "/sign-in"


def test_second_factor_still_asked_after_reset(
    app, auth, make_user, mailbox, enrol_totp, set_policy
):
    user_id = make_user(KNOWN)
    enrol_totp(user_id)
    set_policy(mode="required")
    ask(auth, KNOWN)
    reset(auth, link_in(mailbox))
    response = auth.login(KNOWN, NEW_PASSWORD)
    assert response.status_code == 303
    assert response.headers["Location"] == "/mfa/challenge"
    assert auth.client.get("/").headers["Location"] == "/mfa/challenge"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(MfaFactor.id))) == 1


def test_reset_ends_other_sessions_and_remembered_devices(app, auth, make_user, mailbox):
    user_id = make_user(KNOWN)
    other = AuthActions(app.test_client())
    other.login(KNOWN, PASSWORD)
    assert other.client.get("/").status_code == 200
    with app.app_context():
        db.session.add(
            RememberedDevice(
                user_id=user_id,
                token_hash=b"\x01" * 32,
                label="Firefox on Linux",
                expires_at=datetime.now(UTC) + timedelta(days=30),
            )
        )
        db.session.commit()
    ask(auth, KNOWN)
    reset(auth, link_in(mailbox))
    signed_out = other.client.get("/")
    assert signed_out.status_code == 303
    assert urlsplit(signed_out.headers["Location"]).path == "/sign-in"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(RememberedDevice.id))) == 0
        states = db.session.execute(sa.select(UserSession.state, UserSession.end_reason)).all()
        assert [tuple(s) for s in states] == [("ended", "password_changed")]


def test_reset_signs_out_whoever_was_signed_in_on_this_browser(app, auth, make_user, mailbox):
    make_user(KNOWN)
    make_user("reception@clinic.example", role="Reception")
    ask(auth, KNOWN)
    path = link_in(mailbox)
    auth.login("reception@clinic.example", PASSWORD)
    assert auth.client.get("/").status_code == 200
    reset(auth, path)
    bounced = auth.client.get("/")
    assert bounced.status_code == 303
    assert urlsplit(bounced.headers["Location"]).path == "/sign-in"


def test_reset_clears_the_password_throttle(app, auth, make_user, mailbox):
    make_user(KNOWN)
    for _ in range(6):
        auth.login(KNOWN, "wrong password, wrong password")
    with app.test_request_context():
        assert throttle.check(throttle.email_key(KNOWN)).block is not None
    ask(auth, KNOWN)
    reset(auth, link_in(mailbox))
    with app.test_request_context():
        assert throttle.check(throttle.email_key(KNOWN)).block is None
    assert auth.login(KNOWN, NEW_PASSWORD).status_code == 303


def test_database_holds_no_raw_token(app, auth, make_user, mailbox):
    make_user(KNOWN)
    ask(auth, KNOWN)
    path = link_in(mailbox)
    token = path.rsplit("/", 1)[1]
    open_link(auth.client, path)
    reset(auth, path, "too short", "too short")  # a failed try leaves nothing behind either
    dump = dump_everything(app)
    assert token not in dump and token.lower() not in dump.lower()
    with app.app_context():
        row = db.session.scalar(sa.select(PasswordResetToken))
        assert len(row.token_hash) == 32 and row.token_hash.hex() in dump  # the dump sees bytes


def test_mismatched_passwords_422_and_the_link_still_works(auth, make_user, mailbox):
    make_user(KNOWN)
    ask(auth, KNOWN)
    path = link_in(mailbox)
    response = reset(auth, path, NEW_PASSWORD, "a different long passphrase")
    assert response.status_code == 422
    assert "The two passwords are not the same." in response.get_data(as_text=True)
    assert 'aria-invalid="true"' in response.get_data(as_text=True)
    assert reset(auth, path).status_code == 303


def test_too_short_password_422(auth, make_user, mailbox):
    make_user(KNOWN)
    ask(auth, KNOWN)
    path = link_in(mailbox)
    response = reset(auth, path, "short", "short")
    assert response.status_code == 422
    assert "Use at least 12 characters." in response.get_data(as_text=True)
    assert auth.client.get("/reset-password").status_code == 200
    assert open_link(auth.client, path).status_code == 200
    assert auth.login(KNOWN, PASSWORD).status_code == 303


def test_racing_requests_spend_the_link_once(app, auth, make_user, mailbox):
    """Both requests found the link usable; the conditional UPDATE lets only one through."""
    from services import password_reset

    make_user(KNOWN)
    ask(auth, KNOWN)
    token = link_in(mailbox).rsplit("/", 1)[1]
    with app.test_request_context():
        first = password_reset.usable(token)
        second = password_reset.usable(token)
        assert first is not None and second is not None
        assert password_reset.complete(first, NEW_PASSWORD) is True
        assert password_reset.complete(second, "the racer's long passphrase") is False
    assert auth.login(KNOWN, NEW_PASSWORD).status_code == 303


def test_link_of_switched_off_account_refused(app, auth, make_user, mailbox):
    user_id = make_user(KNOWN)
    ask(auth, KNOWN)
    path = link_in(mailbox)
    with app.app_context():
        from models import User

        db.session.get(User, user_id).active = False
        db.session.commit()
    assert open_link(auth.client, path).status_code == 410
    assert reset(auth, path).status_code == 410


EXPIRED_LINK = "<h1>This link has expired or was already used</h1>"


@pytest.mark.parametrize(
    ("token", "opened", "posted"),
    [
        ("A" * 5000, 410, 405),
        ("%00", 410, 405),
        ("abc%00def", 410, 405),
        ("%ff%fe", 410, 405),
        ("%F0%9F%92%A9", 410, 405),
        ("'; DROP TABLE users; --", 410, 405),
        ("x", 410, 405),
        # The client decodes %2f, so this path has more segments and matches no route.
        ("..%2f..%2fetc%2fpasswd", 404, 404),
    ],
)
def test_hostile_tokens_get_a_clear_4xx(auth, token, opened, posted):
    """A token that is no token is traded like any other and found expired; the link's
    URL takes only GET (the form posts to /reset-password)."""
    titles = {
        404: "<h1>Page not found</h1>",
        405: "<h1>That action is not available here</h1>",
        410: EXPIRED_LINK,
    }
    path = f"/reset-password/{token}"
    page = auth.client.get(path, follow_redirects=True)
    assert page.status_code == opened
    assert titles[opened] in page.get_data(as_text=True)
    assert token not in page.request.path  # a redirect, if any, left the token behind
    form = {
        "csrf_token": auth.csrf_token("/forgot-password"),
        "password": NEW_PASSWORD,
        "confirm": NEW_PASSWORD,
    }
    refused = auth.client.post(path, data=form)
    assert refused.status_code == posted
    assert titles[posted] in refused.get_data(as_text=True)
    after = auth.client.post("/reset-password", data=form)
    assert after.status_code == 410
    assert EXPIRED_LINK in after.get_data(as_text=True)
