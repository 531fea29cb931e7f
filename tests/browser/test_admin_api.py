"""Admin → API access (ADM-10) in real Chromium, JavaScript on and off: create an API user
and a token, see the secret once and use it against the live server's API, then revoke it
after the confirmation step and see the API refuse it. Screenshots at the test's width and a
phone's, each checked by axe-core."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from urllib.parse import urlparse

import pyotp
import pytest
import sqlalchemy as sa

from models import ApiToken, MfaFactor, Role, User, db
from services import crypto
from tests.browser.test_admin import mark_document, shots, still_same_document
from tests.browser.test_wizard import sign_in_with_password

pytestmark = pytest.mark.browser

ADMIN = "admin@clinic.example"
SECRET = re.compile(r"cmfa_[A-Za-z0-9_-]{43}")


@pytest.fixture
def admin_secret(live_server, password_hash) -> str:
    """An Administrator with an authenticator app, and two staff."""
    with live_server.app.app_context():
        roles = {role.name: role for role in db.session.scalars(sa.select(Role))}
        secret = pyotp.random_base32(32)
        admin = User(
            email=ADMIN, full_name="Alex Admin", password_hash=password_hash,
            role=roles["Administrator"],
        )  # fmt: skip
        db.session.add(admin)
        for email, name in [("dr.ada@clinic.example", "Ada Lim"), ("desk@clinic.example", "Kim")]:
            db.session.add(
                User(email=email, full_name=name, password_hash=password_hash,
                     role=roles["Practitioner"])
            )  # fmt: skip
        db.session.flush()
        db.session.add(
            MfaFactor(
                user_id=admin.id, kind="totp", is_default=True,
                secret_encrypted=crypto.encrypt(secret),
            )
        )  # fmt: skip
        db.session.commit()
    return secret


def call_api(base: str, secret: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        base + "/api/v1/users", headers={"Authorization": f"Bearer {secret}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_create_an_api_user_and_a_token_then_revoke_it(page, live_server, admin_secret):
    base = live_server.url
    sign_in_with_password(page, base, ADMIN)
    page.get_by_label("6-digit code").fill(pyotp.TOTP(admin_secret).now())
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(base + "/")
    page.locator("header").get_by_role("link", name="Admin").click()
    page.get_by_role("link", name="API access").click()
    page.get_by_role("heading", name="API access", level=1).wait_for()
    assert urlparse(page.url).path == "/admin/api"
    assert page.get_by_text("No API users yet.").is_visible()

    # A new API user, with the default role for reports.
    new_user = page.get_by_role("region", name="New API user")
    new_user.get_by_label("Name").fill("Monthly report")
    assert new_user.get_by_label("Role in reports").input_value() == "Reporting"
    mark_document(page)
    new_user.get_by_role("button", name="Create API user").click()
    page.get_by_role("status").filter(has_text="API user Monthly report created.").wait_for()
    assert urlparse(page.url).path == "/admin/api"
    if page.js_enabled:
        assert still_same_document(page)
    card = page.get_by_role("article", name="Monthly report")
    assert "Role in reports: Reporting" in card.inner_text()
    assert card.get_by_text("No tokens yet.").is_visible()
    # Staff are not listed here.
    assert page.get_by_text("Ada Lim").count() == 0

    # A token: its secret is shown this once.
    card.get_by_label("Label").fill("Power BI on the reporting server")
    card.get_by_label("Valid for (days)").fill("30")
    mark_document(page)
    card.get_by_role("button", name="Create token").click()
    page.get_by_role("heading", name="Copy the new token now").wait_for()
    if page.js_enabled:
        assert still_same_document(page)
    secret = page.locator("#new-token-secret").inner_text().strip()
    assert SECRET.fullmatch(secret)
    assert len(SECRET.findall(page.content())) == 1
    card = page.get_by_role("article", name="Monthly report")
    assert "Power BI on the reporting server" in card.inner_text()
    assert "Active" in card.inner_text() and "never used" in card.inner_text()
    page.get_by_role("heading", name="Copy the new token now").scroll_into_view_if_needed()
    shots(page, "50-admin-api-new-token")

    status, body = call_api(base, secret)
    assert status == 200
    assert {u["email"] for u in body["users"]} >= {ADMIN, "dr.ada@clinic.example"}
    with live_server.app.app_context():
        stored = db.session.scalar(sa.select(ApiToken.token_hash))
        assert secret.encode() not in stored

    # Back on the page later: the secret is gone, the use is recorded.
    page.goto(base + "/admin/api")
    assert SECRET.search(page.content()) is None
    card = page.get_by_role("article", name="Monthly report")
    assert "from 127.0.0.1" in card.inner_text()
    shots(page, "51-admin-api")

    # Revoke, after saying what it does.
    mark_document(page)
    card.get_by_role("button", name="Revoke token Power BI on the reporting server").click()
    confirm = page.locator("section.confirm")
    page.get_by_role("heading", name="Revoke this token?").wait_for()
    if page.js_enabled:
        assert still_same_document(page)
        assert page.title() == "API access · Harbour Clinic"
    else:
        assert page.title() == "Revoke a token · Harbour Clinic"
    assert "Anything still using it is refused from its next request." in confirm.inner_text()
    with live_server.app.app_context():
        assert db.session.scalar(sa.select(ApiToken.revoked_at)) is None
    shots(page, "52-admin-api-revoke")
    confirm.get_by_role("button", name="Revoke token").click()
    page.get_by_role("status").filter(has_text="revoked.").wait_for()
    assert urlparse(page.url).path == "/admin/api"
    card = page.get_by_role("article", name="Monthly report")
    assert "Revoked" in card.inner_text()
    assert card.get_by_role("button", name=re.compile("^Revoke")).count() == 0
    shots(page, "53-admin-api-revoked")

    status, body = call_api(base, secret)
    assert (status, body["message"]) == (401, "The API token has been revoked.")


def test_keep_it_goes_back_without_revoking(page, live_server, admin_secret):
    base = live_server.url
    with live_server.app.app_context():
        from services import api_access

        api_user = api_access.create_user("Audit export", "Location")
        api_access.issue(api_user, "Nightly job")
        db.session.commit()
    sign_in_with_password(page, base, ADMIN)
    page.get_by_label("6-digit code").fill(pyotp.TOTP(admin_secret).now())
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(base + "/")
    page.goto(base + "/admin/api")
    page.get_by_role("button", name="Revoke token Nightly job").click()
    page.get_by_role("heading", name="Revoke this token?").wait_for()
    page.get_by_role("link", name="Keep it").click()
    page.get_by_role("heading", name="API users").wait_for()
    assert urlparse(page.url).path == "/admin/api"
    card = page.get_by_role("article", name="Audit export")
    assert "Active" in card.inner_text()
    with live_server.app.app_context():
        assert db.session.scalar(sa.select(ApiToken.revoked_at)) is None
