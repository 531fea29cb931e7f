"""The Host header is not trusted (SEC-3): only configured host names are answered, a bad
Host gets the 400 page, X-Forwarded-Host counts only when asked for, and links in emails come
from MFA_BASE_URL (SEC-4)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask, request

from blueprints.errors import BAD_HOST_HINT
from models import db
from services.links import external_url
from tests.conftest import make_app

BAD_REQUEST_WORDS = "Something in that request was not right"


@pytest.fixture
def make_host_app(database_url: str, app: Flask) -> Iterator:
    """make_host_app(**config) -> an app on the test database with a route that shows the
    host the app works with (request.host, after ProxyFix and the trusted-host check)."""
    made: list[Flask] = []

    def make(**config) -> Flask:
        host_app = make_app(database_url, **config)
        host_app.add_url_rule("/test-host", "test_host", lambda: request.host)
        made.append(host_app)
        return host_app

    yield make
    for host_app in made:
        with host_app.app_context():
            db.session.remove()
            db.engine.dispose()


def assert_bad_host_page(response, *, partial: bool = False) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert BAD_REQUEST_WORDS in body and BAD_HOST_HINT.replace("'", "&#39;") in body
    assert "Error 400" in body
    assert ("<html" in body) is not partial


@pytest.mark.parametrize(
    "host",
    [
        "a" * 64,  # one DNS label over 63 characters: IDNA refuses it
        "a" * 64 + ".localhost",
        "evil.example",
        "localhost.evil.example",
        "bad host",
        "localhost:99999",
        "localhost:0",
        "[::1",
        "",
    ],
    ids=[
        "64-char-label",
        "64-char-label-dotted",
        "untrusted",
        "suffix",
        "space",
        "bad-port",
        "port-0",
        "broken-ipv6",
        "empty",
    ],
)
def test_a_bad_or_untrusted_host_gets_the_400_page(client, host):
    page = client.get("/sign-in", headers={"Host": host})
    assert_bad_host_page(page)
    partial = client.get("/sign-in", headers={"Host": host, "HX-Request": "true"})
    assert_bad_host_page(partial, partial=True)


def test_a_64_character_host_label_is_400_not_500(client):
    """The reported case: `curl -H "Host: $(printf 'a%.0s' $(seq 64))" .../sign-in` was a 500
    (IDNA's "label too long", then url_for failing while the error page rendered)."""
    response = client.get("/sign-in", headers={"Host": "a" * 64})
    assert_bad_host_page(response)
    assert "<form" not in response.get_data(as_text=True)


def test_an_untrusted_host_is_refused_before_csrf_sessions_and_the_mfa_guard(
    app, client, auth, make_user, enrol_totp, set_policy
):
    """A pending sign-in is sent to its step on every request; with an untrusted Host that
    redirect cannot be built, so the host must be refused first: 400, never 500."""
    user_id = make_user()
    enrol_totp(user_id)
    set_policy(mode="required")
    assert auth.login().headers["Location"] == "/mfa/challenge"
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    client.set_cookie(cookie.key, cookie.value, domain="evil.example")
    assert_bad_host_page(client.get("/", headers={"Host": "evil.example"}))
    # A POST without a CSRF token gets the host's answer, not the CSRF one.
    post = client.post("/sign-in", data={"email": "x"}, headers={"Host": "evil.example"})
    assert_bad_host_page(post)
    # The same browser on the real host is still on its step.
    assert client.get("/").headers["Location"] == "/mfa/challenge"


def test_trusted_hosts_come_from_the_base_url_and_the_extra_names(make_host_app):
    host_app = make_host_app(
        MFA_BASE_URL="https://mfa.clinic.example", MFA_TRUSTED_HOSTS="clinic-lan, MFA.local"
    )
    assert host_app.config["TRUSTED_HOSTS"] == ["mfa.clinic.example", "clinic-lan", "mfa.local"]
    client = host_app.test_client()
    for host in ("mfa.clinic.example", "clinic-lan", "mfa.local", "clinic-lan:8443"):
        response = client.get("/test-host", headers={"Host": host})
        assert response.status_code == 200 and response.get_data(as_text=True) == host
    # Production does not answer to loopback names it was not given.
    for host in ("localhost", "127.0.0.1"):
        assert_bad_host_page(client.get("/test-host", headers={"Host": host}))


def test_forwarded_host_is_ignored_without_mfa_trust_forwarded_host(make_host_app):
    """Behind one proxy (MFA_TRUSTED_PROXIES=1) X-Forwarded-For and -Proto count, but a
    client's X-Forwarded-Host does not change the host the app works with."""
    client = make_host_app(MFA_TRUSTED_PROXIES=1).test_client()
    response = client.get(
        "/test-host",
        headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
    )
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "localhost"
    assert_bad_host_page(client.get("/sign-in", headers={"Host": "evil.example"}))


def test_forwarded_host_when_trusted_must_still_be_a_trusted_host(make_host_app):
    client = make_host_app(
        MFA_TRUSTED_PROXIES=1, MFA_TRUST_FORWARDED_HOST=True, MFA_TRUSTED_HOSTS="clinic-lan"
    ).test_client()
    response = client.get("/test-host", headers={"X-Forwarded-Host": "clinic-lan"})
    assert response.status_code == 200 and response.get_data(as_text=True) == "clinic-lan"
    forged = client.get("/sign-in", headers={"X-Forwarded-Host": "evil.example"})
    assert_bad_host_page(forged)


def test_error_pages_render_when_templates_cannot(app, client, monkeypatch):
    """If the full error page cannot be rendered (no URL adapter, database down, a template
    error), a plain page with the same status and words goes out instead of a crash."""
    import blueprints.errors

    @app.get("/test-boom")
    def boom():
        raise RuntimeError("kaboom")

    def broken_render(*args, **kwargs):
        raise RuntimeError("the error template is broken too")

    monkeypatch.setattr(blueprints.errors, "render", broken_render)
    page = client.get("/test-boom")
    assert page.status_code == 500
    body = page.get_data(as_text=True)
    assert "Something went wrong on our side" in body and "Error 500" in body
    assert "<html" in body and "kaboom" not in body
    partial = client.get("/nowhere", headers={"HX-Request": "true"})
    assert partial.status_code == 404
    assert "Page not found" in partial.get_data(as_text=True)
    assert "<html" not in partial.get_data(as_text=True)


def test_external_url_uses_mfa_base_url_in_and_out_of_requests(make_host_app):
    host_app = make_host_app(
        MFA_BASE_URL="https://mfa.clinic.example:8443/", MFA_TRUSTED_HOSTS="localhost"
    )
    assert host_app.config["MFA_BASE_URL"] == "https://mfa.clinic.example:8443"
    with host_app.app_context():
        assert external_url("auth.sign_in") == "https://mfa.clinic.example:8443/sign-in"
    with host_app.test_request_context("/", headers={"Host": "localhost"}):
        assert (
            external_url("auth.open_reset_link", token="abc")
            == "https://mfa.clinic.example:8443/reset-password/abc"
        )
