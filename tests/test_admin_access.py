"""Who reaches /admin (ADM-1): only a signed-in Administrator; everyone else gets 404 from every
admin URL, GET and POST, so the area's existence is not advertised. Changes need a fresh
sign-in and a CSRF token."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask

from models import AuditEvent, ClinicPolicy, Role, User, db
from tests.admin_forms import security_settings
from tests.admin_helpers import ACTION_SLUGS, no_admin_changes
from tests.conftest import PASSWORD, AuthActions

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
ADMIN = "boss@clinic.example"
NURSE = "nurse@clinic.example"


def admin_urls(app: Flask) -> list[tuple[str, str]]:
    """(method, path) of every admin route, with ids filled in: a new route is covered here
    the day it is added."""
    urls = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        path = re.sub(r"<int:\w+>", "1", rule.rule)
        urls.extend((method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"}))
    return urls


@pytest.fixture
def people(make_user, enrol_totp):
    admin = make_user(ADMIN, role="Administrator")
    nurse = make_user(NURSE)
    return {ADMIN: enrol_totp(admin)[0], NURSE: enrol_totp(nurse)[0]}


def signed_in(auth: AuthActions, email: str, secret: str) -> AuthActions:
    auth.login(email)
    assert auth.verify_totp(pyotp.TOTP(secret).now()).status_code == 303
    return auth


def test_every_admin_route_is_listed(app):
    """The list the tests below walk is not empty, and holds the pages of this issue."""
    urls = admin_urls(app)
    for expected in [
        ("GET", "/admin"),
        ("GET", "/admin/security"),
        ("POST", "/admin/security"),
        ("POST", "/admin/security/roles/1"),
        ("GET", "/admin/users/1"),
        ("POST", "/admin/users/1"),
    ]:
        assert expected in urls


@pytest.mark.parametrize("who", ["visitor", "staff", "pending_admin", "pending_staff"])
def test_non_admins_get_404_everywhere(app, client, auth, people, who):
    if who == "staff":
        signed_in(auth, NURSE, people[NURSE])
    elif who.startswith("pending"):
        auth.login(ADMIN if who == "pending_admin" else NURSE)
    token = auth.csrf_token("/sign-in")
    for method, path in admin_urls(app):
        for headers in ({}, {"HX-Request": "true"}):
            # With a valid CSRF token and without: the answer is 404 before CSRF is checked.
            for data in ({"csrf_token": token, "mode": "required"}, {"mode": "required"}):
                response = client.open(path, method=method, data=data, headers=headers)
                assert response.status_code == 404, (who, method, path, headers, data)
                assert "admin" not in response.get_data(as_text=True).lower()
    with app.app_context():
        assert (
            db.session.get(ClinicPolicy, 1) is None
            or db.session.get(ClinicPolicy, 1).mode != "required"
        )


def test_an_unknown_admin_url_is_404_for_an_admin_too(client, auth, people):
    signed_in(auth, ADMIN, people[ADMIN])
    assert client.get("/admin/nothing-here").status_code == 404
    assert client.get("/admin/users/999999").status_code == 404


def test_admin_reaches_the_area_and_the_header_links_to_it(client, auth, people):
    signed_in(auth, ADMIN, people[ADMIN])
    home = client.get("/").get_data(as_text=True)
    assert '<a href="/admin/security">Admin</a>' in home
    assert client.get("/admin").headers["Location"] == "/admin/security"
    page = client.get("/admin/security")
    assert page.status_code == 200
    assert "<h1>Security settings</h1>" in page.get_data(as_text=True)


def test_staff_see_no_admin_link(client, auth, people):
    signed_in(auth, NURSE, people[NURSE])
    assert "/admin" not in client.get("/").get_data(as_text=True)


def settings(token: str, **values: object) -> dict[str, object]:
    return security_settings(token, **values)


def test_a_stale_admin_re_authenticates_before_any_change_lands(app, people):
    """Older than MFA_FRESH_AUTH_FOR (10 minutes): the POST is sent to re-authenticate and
    nothing changes; after the password it goes through."""
    auth = AuthActions(app.test_client())
    with time_machine.travel(T0, tick=False) as clock:
        signed_in(auth, ADMIN, people[ADMIN])
        token = auth.csrf_token("/admin/security")
        clock.shift(timedelta(minutes=10, seconds=1))
        for path, data in [
            ("/admin/security", settings(token, support_contact="Sam, ext 204")),
            ("/admin/security/roles/3", {"csrf_token": token, "role-3-mode": "off"}),
            (
                "/admin/users/2",
                {
                    "csrf_token": token,
                    "override": "exempt",
                    "same_location": "default",
                    "mobile_number": "",
                },
            ),
        ]:
            response = auth.client.post(
                path, data=data, headers={"Referer": "http://localhost/admin/security"}
            )
            assert response.status_code == 303, path
            assert response.headers["Location"] == "/reauthenticate?next=/admin/security"
        with app.app_context():
            assert (
                db.session.get(ClinicPolicy, 1) is None
                or db.session.get(ClinicPolicy, 1).support_contact == ""
            )
            assert db.session.get(Role, 3).mfa_mode == "default"
            assert (
                db.session.scalar(sa.select(AuditEvent).where(AuditEvent.event.like("admin.%")))
                is None
            )
        again = auth.post("/reauthenticate", {"password": PASSWORD, "next": "/admin/security"})
        assert again.status_code == 303
        token = auth.csrf_token("/admin/security")  # the session id changed
        saved = auth.client.post(
            "/admin/security", data=settings(token, support_contact="Sam, ext 204")
        )
        assert saved.status_code == 303
    with app.app_context():
        assert db.session.get(ClinicPolicy, 1).support_contact == "Sam, ext 204"


def test_changes_without_a_csrf_token_are_refused(app, client, auth, people):
    signed_in(auth, ADMIN, people[ADMIN])
    for path, data in [
        ("/admin/security", settings("", support_contact="x")),
        ("/admin/security/roles/3", {"role-3-mode": "off"}),
        ("/admin/users/2", {"override": "exempt", "same_location": "default"}),
    ]:
        data.pop("csrf_token", None)
        response = client.post(path, data=data)
        assert response.status_code == 400, path
        assert "This form had expired or came from somewhere else" in response.get_data(
            as_text=True
        )
    with app.app_context():
        assert db.session.get(Role, 3).mfa_mode == "default"
        assert (
            db.session.scalar(sa.select(AuditEvent).where(AuditEvent.event.like("admin.%"))) is None
        )


def test_every_new_admin_route_is_listed_with_its_ids_filled_in(app):
    """The users list, adding a person and each action on a person's access (GET asks to
    confirm, POST does it): walked by the tests above and below with real paths."""
    urls = admin_urls(app)
    assert ("GET", "/admin/users") in urls
    assert ("GET", "/admin/users/new") in urls and ("POST", "/admin/users/new") in urls
    for slug in ACTION_SLUGS:
        assert ("GET", f"/admin/users/1/{slug}") in urls, slug
        assert ("POST", f"/admin/users/1/{slug}") in urls, slug
    assert not [path for _, path in urls if "<" in path or ">" in path]


def admin_posts(app) -> list[str]:
    """Every admin POST path, aimed at the nurse (user 2) rather than the admin (user 1)."""
    return [
        re.sub(r"^/admin/users/1(?=/|$)", "/admin/users/2", path)
        for method, path in admin_urls(app)
        if method == "POST"
    ]


def test_a_stale_admin_re_authenticates_before_any_admin_post(app, people, mailbox):
    """Every admin POST (settings, roles, a person's rules and every action on their access,
    adding a person): a session older than MFA_FRESH_AUTH_FOR is sent to re-authenticate and
    nothing is done, audited or emailed."""
    auth = AuthActions(app.test_client())
    with time_machine.travel(T0, tick=False) as clock:
        signed_in(auth, ADMIN, people[ADMIN])
        token = auth.csrf_token("/admin/users")
        clock.shift(timedelta(minutes=10, seconds=1))
        for path in admin_posts(app):
            data = {
                "csrf_token": token,
                "role": "3",
                "hours": "8",
                "email": "new@clinic.example",
                "full_name": "New",
                "override": "exempt",
                "same_location": "default",
            }
            response = auth.client.post(
                path, data=data, headers={"Referer": "http://localhost/admin/users"}
            )
            assert response.status_code == 303, path
            assert response.headers["Location"] == "/reauthenticate?next=/admin/users", path
        for path in [p for m, p in admin_urls(app) if m == "GET" and p.count("/") == 4]:
            asking = auth.client.get(path)
            assert asking.status_code == 303, path
            assert asking.headers["Location"] == f"/reauthenticate?next={path}", path
    assert no_admin_changes(app)
    with app.app_context():
        nurse = db.session.get(User, 2)
        assert (nurse.active, nurse.role_id, nurse.mfa_bypass_until) == (True, 2, None)
        assert db.session.scalar(sa.select(sa.func.count(User.id))) == 2
    assert mailbox.messages == []


def test_every_admin_post_without_a_csrf_token_is_refused(app, client, auth, people, mailbox):
    signed_in(auth, ADMIN, people[ADMIN])
    for path in admin_posts(app):
        response = client.post(path, data={"role": "3", "hours": "8", "email": "x@clinic.example"})
        assert response.status_code == 400, path
        assert "This form had expired or came from somewhere else" in response.get_data(
            as_text=True
        )
    assert no_admin_changes(app)
    with app.app_context():
        assert db.session.get(User, 2).active
    assert mailbox.messages == []
