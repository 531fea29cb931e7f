"""Sign-in and sign-out in real Chromium, with JavaScript on and off."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from models import Role, User, db
from tests.browser.conftest import shot
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def nurse(live_server, password_hash):
    with live_server.app.app_context():
        role = db.session.scalar(sa.select(Role).where(Role.name == "Practitioner"))
        db.session.add(
            User(
                email="nurse@clinic.example",
                full_name="Nurse Joy",
                password_hash=password_hash,
                role=role,
            )
        )
        db.session.commit()
    return "nurse@clinic.example"


def test_sign_in_and_out(page, live_server, nurse):
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.goto(live_server.url + "/")
    assert page.url.startswith(live_server.url + "/sign-in")
    shot(page, "01-sign-in")

    page.get_by_label("Email address").fill(nurse)
    page.get_by_label("Password").fill("wrong password entirely")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "do not match an account" in alert.inner_text()
    shot(page, "02-sign-in-error")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(live_server.url + "/")
    assert page.get_by_role("heading", name="Welcome, Nurse Joy").is_visible()
    shot(page, "03-home")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/sign-in\?signed_out=1$"))
    assert "You have signed out." in page.content()
    shot(page, "05-signed-out")
    page.goto(live_server.url + "/")
    assert "/sign-in" in page.url
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []


def test_sign_in_page_on_a_phone(browser, live_server):
    context = browser.new_context(viewport={"width": 375, "height": 700}, is_mobile=True)
    page = context.new_page()
    page.goto(live_server.url + "/sign-in")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    shot(page, "01-sign-in-phone")
    context.close()


def test_expired_form_leaves_a_fresh_form(page, live_server, nurse):
    """CSRF token expired (the session cookie is gone): the message above a fresh sign-in form
    with JavaScript on, a way back to one without; then signing in from it works."""
    page.goto(live_server.url + "/sign-in")
    page.context.clear_cookies()
    page.get_by_label("Email address").fill(nurse)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    if page.js_enabled:
        page.get_by_text("The form had expired, so nothing was sent").wait_for()
    else:
        page.get_by_text("This form had expired").wait_for()
        shot(page, "04-form-expired-page")
        page.get_by_role("link", name="Open the form again").click()
    assert page.url == live_server.url + "/sign-in"
    assert page.get_by_role("heading", name="Sign in").is_visible()
    shot(page, "04-form-expired")
    page.get_by_label("Email address").fill(nurse)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(live_server.url + "/")
    assert page.get_by_role("heading", name="Welcome, Nurse Joy").is_visible()
