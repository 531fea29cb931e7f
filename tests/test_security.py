"""CSRF, security headers and hostile input (SEC-1, SEC-3)."""

from __future__ import annotations

import re

import pytest

from models import db
from tests.conftest import PASSWORD, make_app


def test_sign_in_without_csrf_token_is_refused(client, make_user):
    make_user()
    client.get("/sign-in")
    response = client.post("/sign-in", data={"email": "nurse@clinic.example", "password": PASSWORD})
    assert response.status_code == 400
    assert "expired or came from somewhere else" in response.get_data(as_text=True)


def test_sign_in_with_another_sessions_token_is_refused(app, client, auth, make_user):
    make_user()
    foreign = auth.csrf_token()
    other = app.test_client()
    other.get("/sign-in")
    response = other.post(
        "/sign-in",
        data={"csrf_token": foreign, "email": "nurse@clinic.example", "password": PASSWORD},
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("action", "current", "back"),
    [
        ("/sign-in", "http://localhost/sign-in?next=%2F", "/sign-in?next=%2F"),
        ("/forgot-password", "http://localhost/forgot-password#top", "/forgot-password"),
        ("/mfa/setup/app/code", "http://localhost/mfa/setup/app/code", "/mfa/setup/app/code"),
        ("/sign-in", "https://evil.example/sign-in", "/"),  # not ours: home
        ("/sign-in", "http://localhost//evil.example/", "/"),
        ("/sign-in", None, "/"),
    ],
)
def test_expired_htmx_form_reloads_its_page_with_the_message(client, action, current, back):
    """Every htmx form: instead of swapping an error in place of the form, htmx reloads the
    page it was on, where the message stands above a fresh form."""
    client.get("/sign-in")
    headers = {"HX-Request": "true"} | ({"HX-Current-URL": current} if current else {})
    response = client.post(action, data={"csrf_token": "stale"}, headers=headers)
    assert response.status_code == 400
    assert response.headers["HX-Redirect"] == back
    assert response.get_data(as_text=True) == ""
    page = client.get("/sign-in").get_data(as_text=True)
    assert "The form had expired, so nothing was sent. Please try again." in page
    assert 'id="sign-in-form"' in page


@pytest.mark.parametrize(
    ("referrer", "link"),
    [
        ("http://localhost/forgot-password", "/forgot-password"),
        ("https://evil.example/forgot-password", None),
        (None, None),
    ],
)
def test_expired_plain_form_links_back_to_a_fresh_one(client, referrer, link):
    client.get("/forgot-password")
    headers = {"Referer": referrer} if referrer else {}
    response = client.post("/forgot-password", data={"email": "a@b.example"}, headers=headers)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "This form had expired or came from somewhere else, so nothing was sent." in html
    assert 'href="/">Go to the start page' in html
    if link:
        assert f'<a class="button" href="{link}">Open the form again</a>' in html
    else:
        assert "Open the form again" not in html


def test_sign_out_without_csrf_token_is_refused(client, auth, make_user):
    make_user()
    auth.login()
    assert client.post("/sign-out").status_code == 400
    assert client.get("/").status_code == 200  # still signed in


def test_sign_out_is_post_only(client, auth, make_user):
    make_user()
    auth.login()
    assert client.get("/sign-out").status_code == 405
    assert client.get("/").status_code == 200


def test_csrf_header_works_for_htmx(client, auth, make_user):
    make_user()
    auth.login()
    token = auth.csrf_token("/")
    response = client.post("/sign-out", headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/sign-in?signed_out=1"


def test_security_headers(client):
    response = client.get("/sign-in")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    # No other site's window keeps a handle on ours, nor embeds our responses.
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert (
        response.headers["Permissions-Policy"]
        == "camera=(), microphone=(), geolocation=(), payment=()"
    )


@pytest.mark.parametrize("path", ["/sign-in", "/no-such-page"])
def test_hsts_over_https_only(client, path):
    """Over https the browser is told to never use plain http here again; over plain http
    the header would be ignored (RFC 6797) and could pin a name that has no TLS yet."""
    secure = client.get(path, base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    plain = client.get(path)
    assert "Strict-Transport-Security" not in plain.headers


def test_hsts_follows_the_proxys_scheme(database_url, app):
    """Behind a trusted proxy, X-Forwarded-Proto says whether the browser used https."""
    behind_proxy = make_app(database_url, MFA_TRUSTED_PROXIES=1)
    proxied = behind_proxy.test_client()
    try:
        secure = proxied.get("/sign-in", headers={"X-Forwarded-Proto": "https"})
        plain = proxied.get("/sign-in", headers={"X-Forwarded-Proto": "http"})
    finally:
        with behind_proxy.app_context():
            db.engine.dispose()
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert "Strict-Transport-Security" not in plain.headers


def test_session_cookie_flags(app, client):
    response = client.get("/sign-in")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-session=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/" in cookie and "Domain" not in cookie


def test_no_inline_script_or_style_in_pages(client, auth, make_user):
    import re

    make_user()
    pages = [client.get("/sign-in").get_data(as_text=True)]
    auth.login()
    pages.append(client.get("/").get_data(as_text=True))
    for html in pages:
        assert not re.search(r"<script(?![^>]*\bsrc=)", html)
        assert " style=" not in html and "<style" not in html
        assert not re.search(r"\son[a-z]+=", html)


def _post(client, auth, data, **kwargs):
    token = auth.csrf_token()
    return client.post("/sign-in", data={"csrf_token": token, **data}, **kwargs)


BAD_REQUEST = "Something in that request was not right"
EXPIRED = "This form had expired or came from somewhere else, so nothing was sent."


def _errors(response) -> list[str]:
    """The field errors of a re-rendered form, in order."""
    return re.findall(r'<p class="error" id="[^"]+-error">([^<]*)</p>', response.get_data(True))


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        (
            {"email": "a" * 10_000 + "@clinic.example", "password": PASSWORD},
            ["Field cannot be longer than 254 characters."],
        ),
        (
            {"email": "nurse@clinic.example", "password": "p" * 10_000},
            ["Field cannot be longer than 256 characters."],
        ),
        ({"email": "nurse@clinic.example"}, ["Enter your password."]),
        ({"password": PASSWORD}, ["Enter your email address."]),
        ({}, ["Enter your email address.", "Enter your password."]),
    ],
    ids=["10kB-email", "10kB-password", "no-password", "no-email", "empty"],
)
def test_bad_form_input_is_422_with_the_field_errors(client, auth, make_user, data, errors):
    make_user()
    response = _post(client, auth, data)
    assert response.status_code == 422
    assert _errors(response) == errors


@pytest.mark.parametrize(
    "data",
    [
        {"email": "nurse@clinic.example\x00", "password": PASSWORD},
        {"email": "nurse@clinic.example", "password": "pass\x00word"},
    ],
    ids=["nul-email", "nul-password"],
)
def test_control_characters_are_400(client, auth, make_user, data):
    make_user()
    response = _post(client, auth, data)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert f"<h1>{BAD_REQUEST}</h1>" in body
    assert "Go back, reload the page and try again." in body


def test_invalid_utf8_is_400(client, auth, make_user):
    """Werkzeug drops a form it cannot decode whole, CSRF token included, so the person sees
    the expired-form message."""
    make_user()
    token = auth.csrf_token()
    body = b"csrf_token=" + token.encode() + b"&email=\xff\xfe%ff@x&password=\xc3\x28"
    response = client.post("/sign-in", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert EXPIRED in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            b'{"email": "nurse@clinic.example", "password": "' + PASSWORD.encode() + b'"}',
            "application/json",
        ),
        (b"<xml/>", "text/xml"),
        (b"\x00\x01\x02", "application/octet-stream"),
        (b"email=nurse%40clinic.example", "text/plain"),
    ],
)
def test_bodies_that_are_not_forms_are_415(client, auth, make_user, body, content_type):
    """With a valid CSRF token, so it is the content type that is refused. The JSON holds the
    right password: Flask-WTF would read it as the form and sign in."""
    make_user()
    token = auth.csrf_token()
    response = client.post(
        "/sign-in", data=body, content_type=content_type, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 415
    body_text = response.get_data(as_text=True)
    assert "<h1>That kind of request is not accepted here</h1>" in body_text
    assert "Use the form on the page." in body_text


def test_a_broken_multipart_form_is_an_empty_form(client, auth, make_user):
    """Werkzeug reads a multipart body it cannot parse as no fields: the form's own 422."""
    make_user()
    token = auth.csrf_token()
    response = client.post(
        "/sign-in",
        data=b"--x\r\nbroken",
        content_type="multipart/form-data; boundary=x",
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 422
    assert _errors(response) == ["Enter your email address.", "Enter your password."]


def test_oversized_body_is_413(client):
    response = client.post(
        "/sign-in", data=b"x" * 200_000, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/?next=%00", 400),
        ("/sign-in?next=%00", 400),
        ("/sign-in?next=%ff%fe", 200),
        ("/sign-in?next=" + "a" * 5000, 200),
    ],
)
def test_bad_query_strings_are_refused_or_ignored(client, path, status):
    """A control character is refused; a next that is not a safe path is dropped."""
    response = client.get(path)
    assert response.status_code == status
    body = response.get_data(as_text=True)
    if status == 400:
        assert f"<h1>{BAD_REQUEST}</h1>" in body
    else:
        assert 'name="next" type="hidden" value=""' in body


def test_garbage_session_cookie_is_ignored(app, client):
    for value in ["garbage", "a.b.c", "\u00e9" * 50, "eyJzaWQiOiJ4In0.bad.sig"]:
        client.set_cookie(app.config["SESSION_COOKIE_NAME"], value)
        assert client.get("/").status_code == 303
        assert client.get("/sign-in").status_code == 200


def test_unknown_page_is_404_page_and_partial(client):
    page = client.get("/no-such-page")
    assert page.status_code == 404
    assert "<html" in page.get_data(as_text=True)
    partial = client.get("/no-such-page", headers={"HX-Request": "true"})
    assert partial.status_code == 404
    body = partial.get_data(as_text=True)
    assert "<html" not in body and "Page not found" in body
