"""The security page in real Chromium, JavaScript on and off: add a way to get codes by text
message, make it the default, sign out a session opened in another browser, move the app to a
new phone (its codes computed by pyotp from the key read off the page); turning two-step
sign-in off and new recovery codes. Screenshots at desktop and phone width, each checked by
axe-core."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pyotp
import pytest
import sqlalchemy as sa

from models import MfaFactor, Role, User, db
from services import crypto, policy, recovery
from tests.browser.conftest import shot
from tests.browser.test_wizard import sign_in_with_password
from tests.conftest import PASSWORD, app_factor

pytestmark = pytest.mark.browser

EMAIL = "robin@clinic.example"
MOBILE = "+61412345678"
CODE_RE = re.compile(r"\b(\d{6})\b")
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def robin(live_server, password_hash) -> str:
    """A Reception person with an authenticator app and recovery codes; returns its secret."""
    secret = pyotp.random_base32(32)
    with live_server.app.app_context():
        policy.update(mode="optional", methods="totp,sms", remember_days=90)
        role = db.session.scalar(sa.select(Role).where(Role.name == "Reception"))
        user = User(
            email=EMAIL,
            full_name="Robin Front",
            password_hash=password_hash,
            role=role,
            mobile_number=MOBILE,
        )
        db.session.add(user)
        db.session.flush()
        db.session.add(app_factor(user.id, secret))
        recovery.generate(user.id)
        db.session.commit()
    return secret


def sign_in_with_app(page, base: str, secret: str, *, remember: bool = False) -> None:
    """Password, then the app's code; ``remember``: this browser skips the code from now."""
    sign_in_with_password(page, base, EMAIL)
    page.get_by_label("6-digit code").fill(pyotp.TOTP(secret).now())
    if remember:
        page.get_by_label(re.compile("Don't ask again on this device")).check()
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(base + "/")


def at_phone_width(page, name: str) -> None:
    """The same page state at 390 px: nothing wider than the screen, and its screenshot."""
    size = page.viewport_size
    page.set_viewport_size(PHONE)
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(page, f"{name}-phone")
    finally:
        page.set_viewport_size(size)


def item(page, label: str):
    """One entry of a list on the security page, by the name it starts with."""
    return page.locator("li.item").filter(has=page.locator("strong", has_text=label))


def test_add_sms_default_sign_out_elsewhere_and_a_new_phone(
    page, browser, live_server, robin, sms_inbox
):
    base, secret = live_server.url, robin
    sign_in_with_app(page, base, secret, remember=True)
    page.get_by_role("link", name="Security").click()
    page.get_by_role("heading", name="Account security").wait_for()
    assert urlparse(page.url).path == "/account/security"
    assert page.get_by_text("Optional for you").is_visible()
    assert item(page, "Chrome on Linux").filter(has_text="Remembered").count() == 1
    shot(page, "40-account")

    # Add a way to get codes: the wizard in "add" mode, back here at the end.
    page.get_by_role("link", name="Add another way to get codes").click()
    page.get_by_role("heading", name="Add a way to get codes").wait_for()
    assert page.get_by_label(re.compile("Text message")).is_checked()  # the one not set up yet
    assert page.get_by_text("You have this already").is_visible()
    shot(page, "41-account-add-choose")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Send SMS to 04******78").click()
    page.get_by_role("heading", name="Enter the code we sent").wait_for()
    code = CODE_RE.search(sms_inbox.to(MOBILE)[-1]["body"]).group(1)
    page.get_by_label("6-digit code").fill(code)
    page.get_by_role("button", name="Verify and turn on").click()
    page.get_by_role("heading", name="Remember this device?").wait_for()
    page.get_by_label(re.compile("No, ask me every time")).check()
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="You're all set").wait_for()
    page.get_by_role("button", name="Back to your security page").click()
    page.get_by_role("heading", name="Account security").wait_for()
    assert page.get_by_text("Codes by text message are set up.").is_visible()
    sms = item(page, "Text message (SMS)")
    assert sms.get_by_text("04******78").is_visible()

    # Make it the default: the section answers in place (htmx) or the page comes back.
    sms.get_by_role("button", name="Make default Text message (SMS)").click()
    page.get_by_text("Text message (SMS): asked for first when you sign in.").wait_for()
    assert item(page, "Text message (SMS)").get_by_text("Default", exact=True).is_visible()
    assert item(page, "Authenticator app").get_by_text("Default", exact=True).count() == 0
    shot(page, "42-account-default")

    # Another browser signs in (by text message now); this one signs it out.
    other = browser.new_context(java_script_enabled=page.js_enabled)
    try:
        desk = other.new_page()
        sign_in_with_password(desk, base, EMAIL)
        desk.get_by_role("heading", name="Two-step sign-in").wait_for()
        code = CODE_RE.search(sms_inbox.to(MOBILE)[-1]["body"]).group(1)
        desk.get_by_label("6-digit code").fill(code)
        desk.get_by_role("button", name="Verify").click()
        desk.wait_for_url(base + "/")
        page.reload()
        sessions = page.locator("#sessions li.item")
        assert sessions.count() == 2
        assert sessions.filter(has_text="This browser").count() == 1
        shot(page, "43-account-two-sessions")
        at_phone_width(page, "43-account-two-sessions")
        page.locator("#sessions").get_by_role("button", name=re.compile("^Sign out Chrome")).click()
        page.get_by_text("Chrome on Linux: signed out.").wait_for()
        assert page.locator("#sessions li.item").count() == 1
        desk.goto(base + "/")
        desk.wait_for_url(re.compile(r".*/sign-in"))
        assert desk.get_by_text("Please sign in to continue.").is_visible()
    finally:
        other.close()
    shot(page, "44-account-signed-out-elsewhere")

    # Move the app to a new phone: the old one keeps working until the new code is in.
    item(page, "Authenticator app").get_by_role("button", name="Move to a new phone").click()
    page.get_by_role("heading", name="Scan this QR code with your app").wait_for()
    assert page.get_by_text("Your old phone keeps working until").is_visible()
    page.get_by_text("Can't scan it? Type this key instead").click()
    new_secret = page.locator(".secret-key code").inner_text().replace(" ", "")
    assert new_secret != secret
    shot(page, "45-account-new-phone")
    page.get_by_role("link", name="Next: enter the code").click()
    page.get_by_label("6-digit code").fill(pyotp.TOTP(new_secret).now())
    page.get_by_role("button", name="Verify and turn on").click()
    page.get_by_role("heading", name="Remember this device?").wait_for()
    page.get_by_label(re.compile("No, ask me every time")).check()
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Back to your security page").click()
    page.get_by_text("Your authenticator app is set up.").wait_for()
    # The old phone's remembered device went with it (DEV-2).
    assert page.get_by_text("No device is remembered").is_visible()
    with live_server.app.app_context():
        stored = db.session.scalar(sa.select(MfaFactor).where(MfaFactor.kind == "totp"))
        assert crypto.decrypt(stored.secret_encrypted) == new_secret
    at_phone_width(page, "46-account-after-new-phone")


def test_turning_it_off_and_new_recovery_codes(page, live_server, robin):
    base = live_server.url
    sign_in_with_app(page, base, robin)
    page.goto(base + "/account/security")

    page.get_by_role("button", name="Make new recovery codes").click()
    page.get_by_role("heading", name="Your new recovery codes").wait_for()
    codes = [c.strip() for c in page.locator("ol.codes code").all_inner_texts()]
    assert len(codes) == 10
    shot(page, "47-account-new-recovery-codes")
    at_phone_width(page, "47-account-new-recovery-codes")
    page.get_by_role("button", name="I have saved my codes").click()
    page.get_by_text("You have 10 recovery codes left.").wait_for()

    item(page, "Authenticator app").get_by_role("button", name=re.compile("^Remove")).click()
    page.get_by_role("heading", name="Turn off two-step sign-in?").wait_for()
    shot(page, "48-account-turn-off")
    page.get_by_role("button", name="Remove it and turn off two-step sign-in").click()
    page.get_by_text("Authenticator app: removed. Two-step sign-in is now off.").wait_for()
    assert page.get_by_text("You get recovery codes when you set up two-step sign-in.").is_visible()
    shot(page, "49-account-off")

    page.get_by_role("link", name="Change password").click()
    page.get_by_role("heading", name="Change your password").wait_for()
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("short")
    page.get_by_label("Type the new password again").fill("short")
    page.get_by_role("button", name="Change password").click()
    page.get_by_text("Use at least 12 characters.").wait_for()
    shot(page, "50-account-password-too-short")
