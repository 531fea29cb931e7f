"""Fresh authentication in real Chromium, JavaScript on and off: a signed-in person whose
password is more than the allowed time old opens the wizard, confirms it is them, and lands
back on the wizard; and the challenge that says no code was sent."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa

from models import MfaFactor, Role, User, db
from services import policy
from tests.browser.conftest import shot
from tests.browser.test_wizard import sign_in_with_password
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def _user(live_server, password_hash, email: str, **policy_values) -> str:
    with live_server.app.app_context():
        policy.update(**policy_values)
        role = db.session.scalar(sa.select(Role).where(Role.name == "Practitioner"))
        db.session.add(
            User(email=email, full_name="Pat Nurse", password_hash=password_hash, role=role)
        )
        db.session.commit()
    return email


def test_a_stale_session_confirms_its_password_and_comes_back(page, live_server, password_hash):
    email = _user(live_server, password_hash, "pat@clinic.example", mode="off")
    base = live_server.url
    sign_in_with_password(page, base, email)
    page.wait_for_url(base + "/")
    # Every session counts as stale from now on: the wizard asks for the password first.
    live_server.app.config["MFA_FRESH_AUTH_FOR"] = timedelta(0)
    try:
        page.get_by_role("link", name="Set up two-step sign-in").click()
        page.get_by_role("heading", name="Confirm it's you").wait_for()
        assert urlparse(page.url).path == "/reauthenticate"
        shot(page, "30-reauthenticate")
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Continue").click()
        page.get_by_text("That password is not right").wait_for()
        shot(page, "31-reauthenticate-wrong")
        live_server.app.config["MFA_FRESH_AUTH_FOR"] = timedelta(minutes=10)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("heading", name="Set up two-step sign-in").wait_for()
        assert urlparse(page.url).path == "/mfa/setup"
        # Still signed in, under the new session id: the header says who and offers sign-out.
        assert page.get_by_role("button", name="Sign out").is_visible()
    finally:
        live_server.app.config["MFA_FRESH_AUTH_FOR"] = timedelta(minutes=10)


def test_the_challenge_says_when_no_code_was_sent(page, live_server, password_hash):
    email = _user(
        live_server, password_hash, "sam@clinic.example", mode="required", methods="totp,email"
    )
    with live_server.app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == email))
        db.session.add(MfaFactor(user_id=user.id, kind="email", is_default=True, target=email))
        db.session.commit()
    port = live_server.app.config["MAIL_PORT"]
    live_server.app.config["MAIL_PORT"] = 1  # the mail server is down
    try:
        sign_in_with_password(page, live_server.url, email)
        page.get_by_text("No code has been sent for this sign-in").wait_for()
        assert "We could not send the email just now" in page.content()
        shot(page, "24-email-challenge-not-sent")
    finally:
        live_server.app.config["MAIL_PORT"] = port
