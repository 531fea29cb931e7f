"""The setup wizard without a browser (WIZ-1 to WIZ-5, AUTH-4)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from models import AuditEvent, MfaFactor, MfaSetup, RecoveryCode, UserSession, db
from tests.conftest import AuthActions

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
KEY_RE = re.compile(r'<p class="secret-key"[^>]*><code>([A-Z2-7 ]+)</code>')


def secret_from_page(html: str) -> str:
    match = KEY_RE.search(html)
    assert match, "no setup key on the page"
    return match.group(1).replace(" ", "")


def start_setup(client, auth: AuthActions) -> str:
    """Sign in (policy sends us to setup), choose the app, return the secret shown."""
    first = auth.login()
    assert first.headers["Location"] == "/mfa/setup"
    chose = auth.post("/mfa/setup", {"method": "totp"})
    assert chose.status_code == 303 and chose.headers["Location"] == "/mfa/setup/app"
    return secret_from_page(client.get("/mfa/setup/app").get_data(as_text=True))


@pytest.fixture
def required(set_policy, make_user):
    set_policy(mode="required", support_contact="Dr Lee, ext 204")
    return make_user()


def test_whole_wizard_as_plain_forms(app, client, auth, required, mailbox):
    with time_machine.travel(T0, tick=False):
        secret = start_setup(client, auth)
        scan = client.get("/mfa/setup/app").get_data(as_text=True)
        assert "Step 2 of 5" in scan and "<svg" in scan and "Dr Lee, ext 204" in scan
        assert client.get("/mfa/setup/app/code").status_code == 200
        verified = auth.post("/mfa/setup/app/code", {"code": pyotp.TOTP(secret).at(T0)})
        assert verified.headers["Location"] == "/mfa/setup/recovery-codes"
        page = client.get("/mfa/setup/recovery-codes").get_data(as_text=True)
        codes = re.findall(r"<code>([A-Z2-7]{5}-[A-Z2-7]{5})</code>", page)
        assert len(codes) == 10 and "Step 4 of 5" in page
        download = client.get("/mfa/setup/recovery-codes.txt")
        assert download.headers["Content-Disposition"].startswith("attachment")
        assert all(c in download.get_data(as_text=True) for c in codes)
        assert codes[0] in client.get("/mfa/setup/recovery-codes/print").get_data(as_text=True)
        saved = auth.post("/mfa/setup/recovery-codes")
        assert saved.headers["Location"] == "/mfa/setup/remember"
        remembered = auth.post("/mfa/setup/remember", {"remember": "no"})
        assert remembered.headers["Location"] == "/mfa/setup/done"
        assert "all set" in client.get("/mfa/setup/done").get_data(as_text=True)
        done = auth.post("/mfa/setup/done")
        assert done.headers["Location"] == "/"
        assert client.get("/").status_code == 200
        # The codes are gone from the server: they were shown once.
        assert client.get("/mfa/setup/recovery-codes").headers["Location"] == "/mfa/setup"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(MfaSetup.user_id))) == 0
        assert db.session.scalar(sa.select(sa.func.count(RecoveryCode.id))) == 10
        factor = db.session.scalar(sa.select(MfaFactor))
        assert factor.is_default and factor.kind == "totp"
    assert "set up" in mailbox.to("nurse@clinic.example")[0]["Subject"]


def test_htmx_steps_swap_into_the_wizard_and_push_the_url(client, auth, required):
    auth.login()
    partial = client.get("/mfa/setup", headers={"HX-Request": "true"})
    body = partial.get_data(as_text=True)
    assert "<html" not in body and "Step 1 of 5" in body
    token = auth.csrf_token("/mfa/setup")
    chose = client.post(
        "/mfa/setup", data={"csrf_token": token, "method": "totp"}, headers={"HX-Request": "true"}
    )
    assert chose.status_code == 200
    assert '"path": "/mfa/setup/app"' in chose.headers["HX-Location"]
    assert '"target": "#wizard"' in chose.headers["HX-Location"]
    step = client.get("/mfa/setup/app", headers={"HX-Request": "true"})
    assert "Step 2 of 5" in step.get_data(as_text=True) and "<html" not in step.get_data(
        as_text=True
    )
    assert step.headers["Cache-Control"] == "no-store"
    page = client.get("/mfa/setup/app").get_data(as_text=True)
    assert 'hx-history="false"' in page


def test_wrong_code_keeps_the_step_and_the_secret(app, client, auth, required):
    with time_machine.travel(T0, tick=False):
        secret = start_setup(client, auth)
        wrong = auth.post("/mfa/setup/app/code", {"code": "123456"})
        assert wrong.status_code == 422
        assert "did not work" in wrong.get_data(as_text=True)
        assert secret_from_page(client.get("/mfa/setup/app").get_data(as_text=True)) == secret
        assert (
            auth.post("/mfa/setup/app/code", {"code": pyotp.TOTP(secret).at(T0)}).status_code == 303
        )


def test_steps_cannot_be_skipped(client, auth, required):
    auth.login()
    for path in ("/mfa/setup/app", "/mfa/setup/app/code", "/mfa/setup/recovery-codes",
                 "/mfa/setup/remember", "/mfa/setup/done"):  # fmt: skip
        assert client.get(path).headers["Location"] == "/mfa/setup", path
    auth.post("/mfa/setup", {"method": "totp"})
    for path in ("/mfa/setup/recovery-codes", "/mfa/setup/remember", "/mfa/setup/done"):
        assert client.get(path).headers["Location"] in ("/mfa/setup", "/mfa/setup/app"), path
    # Posting to a later step, or to "done", does not move the stage.
    for path in ("/mfa/setup/done", "/mfa/setup/remember", "/mfa/setup/recovery-codes"):
        moved = auth.post(path, {"remember": "yes"}, page="/mfa/setup/app")
        assert moved.headers["Location"] in ("/mfa/setup", "/mfa/setup/app"), path
    assert client.get("/mfa/setup/app/code").status_code == 200  # still at the code step
    # Still not signed in: the pending sign-in only reaches setup.
    assert client.get("/").headers["Location"] == "/mfa/setup"


def test_signed_in_user_cannot_skip_steps_either(client, auth, make_user):
    make_user()
    auth.login()  # mode off: signed in with the password
    auth.post("/mfa/setup", {"method": "totp"}, page="/mfa/setup")
    for path in ("/mfa/setup/recovery-codes", "/mfa/setup/remember", "/mfa/setup/done"):
        assert client.get(path).headers["Location"] == "/mfa/setup/app", path
        assert (
            auth.post(path, {"remember": "yes"}, page="/").headers["Location"] == "/mfa/setup/app"
        )
    assert client.get("/mfa/setup/recovery-codes.txt").headers["Location"] == "/mfa/setup/app"


def test_starting_again_makes_a_new_secret(client, auth, required):
    first = start_setup(client, auth)
    auth.post("/mfa/setup", {"method": "totp"})
    second = secret_from_page(client.get("/mfa/setup/app").get_data(as_text=True))
    assert first != second


def test_qr_code_and_grouped_key(client, auth, required):
    secret = start_setup(client, auth)
    html = client.get("/mfa/setup/app").get_data(as_text=True)
    assert len(secret) == 32  # 160 bits
    grouped = KEY_RE.search(html).group(1)
    assert all(len(g) == 4 for g in grouped.split(" ")) and len(grouped.split(" ")) == 8
    assert '<svg width="' in html and "<title>QR code to add Harbour Clinic" in html


def test_only_allowed_methods_are_offered_and_accepted(client, auth, required):
    auth.login()
    page = client.get("/mfa/setup").get_data(as_text=True)
    assert 'value="totp"' in page and "Recommended" in page and "Google Authenticator" in page
    assert 'value="sms"' not in page and 'value="email"' not in page
    refused = auth.post("/mfa/setup", {"method": "sms"})
    assert refused.status_code == 422


def test_required_mode_has_no_way_around_setup(client, auth, required):
    auth.login()
    page = client.get("/mfa/setup").get_data(as_text=True)
    assert "t use multi-factor authentication" not in page
    assert auth.post("/mfa/setup/decline", page="/mfa/setup").status_code == 403
    assert client.get("/").headers["Location"] == "/mfa/setup"


def test_optional_mode_offers_dont_use_mfa(app, client, auth, set_policy, make_user):
    set_policy(mode="optional")
    make_user()
    auth.login()
    page = client.get("/mfa/setup").get_data(as_text=True)
    assert "t use multi-factor authentication" in page
    declined = auth.post("/mfa/setup/decline", page="/mfa/setup")
    assert declined.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    with app.app_context():
        events = list(db.session.scalars(sa.select(AuditEvent.event)))
    assert "mfa.setup_declined" in events


def test_off_mode_signs_in_with_the_password(client, auth, make_user):
    make_user()
    assert auth.login().headers["Location"] == "/"


def test_enrolled_user_is_challenged_even_when_mode_is_off(client, auth, make_user, enrol_totp):
    enrol_totp(make_user())
    assert auth.login().headers["Location"] == "/mfa/challenge"


def test_signed_in_user_can_add_the_app_from_home(app, client, auth, make_user, set_policy):
    set_policy(mode="optional")
    make_user()
    with time_machine.travel(T0, tick=False):
        auth.login()
        auth.post("/mfa/setup/decline", page="/mfa/setup")
        home = client.get("/").get_data(as_text=True)
        assert "Set up two-step sign-in" in home
        auth.post("/mfa/setup", {"method": "totp"})
        secret = secret_from_page(client.get("/mfa/setup/app").get_data(as_text=True))
        code = pyotp.TOTP(secret).at(T0)
        assert auth.post("/mfa/setup/app/code", {"code": code}).status_code == 303
    with app.app_context():
        rows = list(db.session.scalars(sa.select(UserSession).where(UserSession.state == "active")))
    assert len(rows) == 1  # still the same signed-in session


def test_setup_completes_the_pending_sign_in_under_a_new_session(app, client, auth, required):
    name = app.config["SESSION_COOKIE_NAME"]
    with time_machine.travel(T0, tick=False):
        secret = start_setup(client, auth)
        pending_cookie = client.get_cookie(name).value
        auth.post("/mfa/setup/app/code", {"code": pyotp.TOTP(secret).at(T0)})
        assert client.get_cookie(name).value != pending_cookie
        assert client.get("/").status_code == 200
        # The code that enrolled the app cannot be used again to sign in.
        auth.logout()
        auth.login()
        assert auth.verify_totp(pyotp.TOTP(secret).at(T0)).status_code == 422
        nxt = T0 + timedelta(seconds=30)
    with time_machine.travel(nxt, tick=False):
        assert auth.verify_totp(pyotp.TOTP(secret).at(nxt)).status_code == 303


def test_otpauth_uri_fields(client, auth, required):
    """What the QR code encodes, read back from the same function the page uses."""
    from services import totp

    uri = totp.provisioning_uri(
        "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "nurse@clinic.example", "Harbour Clinic"
    )
    parts = urlparse(uri)
    query = parse_qs(parts.query)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert parts.path == "/Harbour%20Clinic:nurse%40clinic.example"
    assert query["issuer"] == ["Harbour Clinic"]
    assert query.get("digits", ["6"]) == ["6"] and query.get("period", ["30"]) == ["30"]
    assert query.get("algorithm", ["SHA1"]) == ["SHA1"]
