"""The email method in real Chromium, JavaScript on and off: the wizard (re-enter the address,
code from a real SMTP server on loopback) and a sign-in with an emailed code."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa

from models import Role, User, db
from services import policy
from tests.browser.conftest import shot
from tests.browser.test_wizard import sign_in_with_password, wait_for_step
from tests.conftest import Mailbox

pytestmark = pytest.mark.browser
CODE_RE = re.compile(r"\b(\d{6})\b")


@pytest.fixture
def practitioner(live_server, password_hash):
    with live_server.app.app_context():
        policy.update(mode="required", methods="totp,email,sms", remember_days=0)
        role = db.session.scalar(sa.select(Role).where(Role.name == "Practitioner"))
        db.session.add(
            User(
                email="dr.lee@clinic.example",
                full_name="Dr Kim Lee",
                password_hash=password_hash,
                role=role,
            )
        )
        db.session.commit()
    return "dr.lee@clinic.example"


def newest_code(mailbox: Mailbox, address: str) -> str:
    return CODE_RE.search(Mailbox.text(mailbox.to(address)[-1])).group(1)


def test_email_wizard_and_sign_in(page, live_server, practitioner, mailbox):
    base = live_server.url
    sign_in_with_password(page, base, practitioner)
    wait_for_step(page, base, "/mfa/setup", "Set up two-step sign-in")
    assert page.get_by_text("Weaker than an app", exact=False).first.is_visible()
    page.get_by_role("radio", name=re.compile("Email")).check()
    shot(page, "20-email-choose")
    page.get_by_role("button", name="Continue").click()

    wait_for_step(page, base, "/mfa/setup/email", "Confirm your email address")
    page.get_by_label("Your email address").fill("dr.lee@elsewhere.example")
    page.get_by_role("button", name="Email me a code").click()
    page.get_by_text("not the email address on your account").wait_for()
    shot(page, "21-email-confirm-wrong")
    page.get_by_label("Your email address").fill(practitioner.upper())
    page.get_by_role("button", name="Email me a code").click()

    wait_for_step(page, base, "/mfa/setup/email/code", "Enter the code we sent")
    assert page.get_by_text("d*****@clinic.example", exact=False).is_visible()
    shot(page, "22-email-code")
    page.get_by_label("6-digit code").fill(newest_code(mailbox, practitioner))
    page.get_by_role("button", name="Verify and turn on").click()

    wait_for_step(page, base, "/mfa/setup/recovery-codes", "Save your recovery codes")
    page.get_by_role("button", name="I have saved my codes").click()
    wait_for_step(page, base, "/mfa/setup/done", "You're all set")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(base + "/")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/sign-in\?signed_out=1$"))
    sign_in_with_password(page, base, practitioner)
    page.get_by_role("heading", name="Two-step sign-in").wait_for()
    assert urlparse(page.url).path == "/mfa/challenge"
    shot(page, "23-email-challenge")
    assert page.get_by_text("We sent a code to d*****@clinic.example").first.is_visible()
    page.get_by_label("6-digit code").fill(newest_code(mailbox, practitioner))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(base + "/")
