"""The setup wizard, sign-in with a code and with a recovery code, in real Chromium,
with JavaScript on and off. Screenshots of every step land in tests/browser/screenshots/."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pyotp
import pytest
import sqlalchemy as sa
import zxingcpp
from PIL import Image

from models import Role, User, db
from services import policy
from tests.browser.conftest import shot
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def reception(live_server, password_hash):
    with live_server.app.app_context():
        policy.update(mode="required", remember_days=90, support_contact="Sam in IT, ext 204")
        role = db.session.scalar(sa.select(Role).where(Role.name == "Reception"))
        db.session.add(
            User(
                email="frontdesk@clinic.example",
                full_name="Robin Front",
                password_hash=password_hash,
                role=role,
            )
        )
        db.session.commit()
    return "frontdesk@clinic.example"


def sign_in_with_password(page, base: str, email: str) -> None:
    page.goto(base + "/sign-in")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def wait_for_step(page, base: str, path: str, heading: str) -> None:
    page.get_by_role("heading", name=heading).wait_for()
    assert urlparse(page.url).path == path, (page.url, path)


def decode_qr(page) -> str:
    png = page.locator("svg.qr").screenshot()
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert results, "no QR code found in the screenshot"
    return results[0].text


def test_wizard_then_sign_in_with_code_and_recovery_code(page, live_server, reception):
    base = live_server.url
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))

    sign_in_with_password(page, base, reception)
    wait_for_step(page, base, "/mfa/setup", "Set up two-step sign-in")
    assert page.get_by_text("Step 1 of 5").is_visible()
    assert page.get_by_text("Sam in IT, ext 204").is_visible()
    assert page.get_by_label(re.compile("Authenticator app")).is_checked()
    shot(page, "10-wizard-choose")
    page.get_by_role("button", name="Continue").click()

    wait_for_step(page, base, "/mfa/setup/app", "Scan this QR code with your app")
    uri = decode_qr(page)
    parts = urlparse(uri)
    query = parse_qs(parts.query)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert unquote(parts.path) == f"/Harbour Clinic:{reception}"
    assert query["issuer"] == ["Harbour Clinic"]
    assert query.get("algorithm", ["SHA1"]) == ["SHA1"]
    assert query.get("digits", ["6"]) == ["6"] and query.get("period", ["30"]) == ["30"]
    secret = query["secret"][0]
    page.get_by_text("Can't scan it? Type this key instead").click()
    shown_key = page.locator(".secret-key code").inner_text()
    assert shown_key.replace(" ", "") == secret
    shot(page, "11-wizard-scan")

    # Back works and keeps the URL in step; the secret stays the same until "Continue".
    page.get_by_role("link", name="Next: enter the code").click()
    wait_for_step(page, base, "/mfa/setup/app/code", "Enter the code from your app")
    page.get_by_role("link", name="Back to the QR code").click()
    wait_for_step(page, base, "/mfa/setup/app", "Scan this QR code with your app")
    assert decode_qr(page) == uri
    page.get_by_role("link", name="Next: enter the code").click()
    wait_for_step(page, base, "/mfa/setup/app/code", "Enter the code from your app")

    shot(page, "12-wizard-code")
    code_field = page.get_by_label("6-digit code")
    assert code_field.get_attribute("autocomplete") == "one-time-code"
    assert code_field.get_attribute("inputmode") == "numeric"
    code_field.fill("000000")
    page.get_by_role("button", name="Verify and turn on").click()
    page.get_by_text("That code did not work").wait_for()
    assert urlparse(page.url).path == "/mfa/setup/app/code"
    shot(page, "12-wizard-code-wrong")
    now_code = pyotp.TOTP(secret).now()
    page.get_by_label("6-digit code").fill(f"{now_code[:3]} {now_code[3:]}")
    page.get_by_role("button", name="Verify and turn on").click()

    wait_for_step(page, base, "/mfa/setup/recovery-codes", "Save your recovery codes")
    codes = [c.strip() for c in page.locator("ol.codes code").all_inner_texts()]
    assert len(codes) == 10 and all(re.fullmatch(r"[A-Z2-7]{5}-[A-Z2-7]{5}", c) for c in codes)
    shot(page, "13-wizard-recovery-codes")
    if page.js_enabled:
        with page.expect_download() as download:
            page.get_by_role("link", name="Download as a text file").click()
        text = Path(download.value.path()).read_text()
        assert all(c in text for c in codes)
    page.get_by_role("button", name="I have saved my codes").click()

    wait_for_step(page, base, "/mfa/setup/remember", "Remember this device?")
    shot(page, "14-wizard-remember")
    page.get_by_label(re.compile("No, ask me every time")).check()
    page.get_by_role("button", name="Continue").click()

    wait_for_step(page, base, "/mfa/setup/done", "You're all set")
    shot(page, "15-wizard-done")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(base + "/")
    assert page.get_by_text("On (authenticator app)").is_visible()

    # Sign out, then in again with a fresh code: the next step's code (one step of drift).
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/sign-in\?signed_out=1$"))
    sign_in_with_password(page, base, reception)
    page.get_by_role("heading", name="Two-step sign-in").wait_for()
    shot(page, "16-challenge")
    page.get_by_label("6-digit code").fill(pyotp.TOTP(secret).at(time.time() + 30))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(base + "/")

    # And once more with a recovery code.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/sign-in\?signed_out=1$"))
    sign_in_with_password(page, base, reception)
    page.get_by_role("link", name="Use a recovery code instead").click()
    page.get_by_role("heading", name="Use a recovery code").wait_for()
    shot(page, "17-recovery")
    page.get_by_label("Recovery code").fill("AAAAA-AAAAA")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("That recovery code did not work").wait_for()
    shot(page, "17-recovery-wrong")
    page.get_by_label("Recovery code").fill(codes[3].lower())
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/")
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []


def test_wizard_on_a_phone(browser, live_server, reception):
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    sign_in_with_password(page, live_server.url, reception)
    page.get_by_role("heading", name="Set up two-step sign-in").wait_for()
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="Scan this QR code with your app").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.js_enabled = True
    shot(page, "11-wizard-scan-phone")
    context.close()


def boxes_overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def assert_codes_one_per_line(page, width: int) -> None:
    boxes = [code.bounding_box() for code in page.locator("ol.codes code").all()]
    assert len(boxes) == 10
    assert len({round(box["x"]) for box in boxes}) == 1, boxes  # one column
    for i, box in enumerate(boxes):
        assert box["x"] + box["width"] <= width, box
        assert not any(boxes_overlap(box, other) for other in boxes[i + 1 :]), boxes


def test_recovery_codes_on_a_phone(browser, live_server, reception):
    """390 px: the codes one per line, not two columns running into each other."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.js_enabled = True
    base = live_server.url
    sign_in_with_password(page, base, reception)
    page.get_by_role("heading", name="Set up two-step sign-in").wait_for()
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="Scan this QR code with your app").wait_for()
    secret = parse_qs(urlparse(decode_qr(page)).query)["secret"][0]
    page.get_by_role("link", name="Next: enter the code").click()
    page.get_by_label("6-digit code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Verify and turn on").click()
    wait_for_step(page, base, "/mfa/setup/recovery-codes", "Save your recovery codes")
    assert_codes_one_per_line(page, 390)
    shot(page, "13-wizard-recovery-codes-phone")

    page.goto(base + "/mfa/setup/recovery-codes/print")
    assert_codes_one_per_line(page, 390)
    shot(page, "13-recovery-codes-print-phone")
    context.close()
