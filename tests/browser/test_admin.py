"""The admin's security settings (issue 8) in real Chromium, JavaScript on and off: the clinic
mode with its confirmation step and the numbers it shows, a role's go-live date, the
"Skip for now" it gives a Reception user until that day and not after, and one person set to
Exempt. Screenshots at the test's width and a phone's land in tests/browser/screenshots/."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlparse

import pyotp
import pytest
import sqlalchemy as sa

from models import MfaFactor, Role, User, db
from services import crypto, localtime, policy
from tests.browser.conftest import shot
from tests.browser.test_wizard import sign_in_with_password, wait_for_step

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
ADMIN = "admin@clinic.example"
FRONT_DESK = "frontdesk@clinic.example"
# (email, name, role, factor kind or None, override, active). Under mode Off with the app and
# email allowed, switching to Required with the app only makes 1 person lose their only factor
# (the email-only one) and 5 people owe setup: not the exempt one, nor the deactivated one.
STAFF = [
    ("dr.ada@clinic.example", "Ada Lim", "Practitioner", "totp", "default", True),
    ("dr.ben@clinic.example", "Ben Ortiz", "Practitioner", "totp", "default", True),
    ("dr.cai@clinic.example", "Cai Hart", "Practitioner", "email", "default", True),
    ("dr.dee@clinic.example", "Dee Moss", "Practitioner", None, "default", True),
    ("dr.eli@clinic.example", "Eli Ward", "Practitioner", None, "default", True),
    (FRONT_DESK, "Robin Front", "Reception", None, "default", True),
    ("desk2@clinic.example", "Kim Desk", "Reception", None, "default", True),
    ("desk3@clinic.example", "Lou Phone", "Reception", "totp", "default", True),
    ("desk4@clinic.example", "Max Exempt", "Reception", None, "exempt", True),
    ("desk5@clinic.example", "Old Desk", "Reception", None, "default", False),
    ("rooms@clinic.example", "Room Four", "Location", None, "default", True),
]


@dataclass
class Clinic:
    admin_secret: str
    ids: dict[str, int]  # email -> user id


@pytest.fixture
def clinic(live_server, password_hash) -> Clinic:
    """An Administrator with an authenticator app, and the staff above; mode Off."""
    app = live_server.app
    with app.app_context():
        policy.update(mode="off", methods="totp,email", support_contact="Sam in IT, ext 204")
        roles = {role.name: role for role in db.session.scalars(sa.select(Role))}
        admin_secret = pyotp.random_base32(32)
        people = [(ADMIN, "Alex Admin", "Administrator", "totp", "default", True), *STAFF]
        ids = {}
        for email, name, role, kind, override, active in people:
            user = User(
                email=email,
                full_name=name,
                password_hash=password_hash,
                role=roles[role],
                mfa_override=override,
                active=active,
            )
            db.session.add(user)
            db.session.flush()
            ids[email] = user.id
            if kind == "totp":
                secret = admin_secret if email == ADMIN else pyotp.random_base32(32)
                db.session.add(
                    MfaFactor(
                        user_id=user.id,
                        kind="totp",
                        is_default=True,
                        secret_encrypted=crypto.encrypt(secret),
                    )
                )
            elif kind == "email":
                db.session.add(
                    MfaFactor(user_id=user.id, kind="email", is_default=True, target=email)
                )
        db.session.commit()
    return Clinic(admin_secret, ids)


def clinic_today(live_server) -> date:
    with live_server.app.app_context():
        return localtime.today()


def as_people_read_it(day: date) -> str:
    """ "24 December 2026" """
    return f"{day.day} {day:%B %Y}"


def set_reception_go_live(live_server, day: date) -> None:
    with live_server.app.app_context():
        role = db.session.scalar(sa.select(Role).where(Role.name == "Reception"))
        role.mfa_mode = "required"
        role.mfa_required_from = day
        db.session.commit()


def reception_id(live_server) -> int:
    with live_server.app.app_context():
        return db.session.scalar(sa.select(Role.id).where(Role.name == "Reception"))


def shots(page, name: str) -> None:
    """The page as it is now at the test's width and at a phone's (no sideways scrolling
    there), each saved by ``shot`` and so checked by axe."""
    shot(page, name)
    width = page.viewport_size
    page.set_viewport_size(PHONE)
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
        shot(page, f"{name}-phone")
    finally:
        page.set_viewport_size(width)


def open_admin(page, base: str, clinic: Clinic) -> None:
    """Sign in as the Administrator (password, then a code from the app) and open "Admin"
    from the header. The sign-in is fresh, so saving needs no re-authentication."""
    sign_in_with_password(page, base, ADMIN)
    page.get_by_role("heading", name="Two-step sign-in").wait_for()
    page.get_by_label("6-digit code").fill(pyotp.TOTP(clinic.admin_secret).now())
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(base + "/")
    page.locator("header").get_by_role("link", name="Admin").click()
    page.get_by_role("heading", name="Security settings", level=1).wait_for()
    assert urlparse(page.url).path == "/admin/security"


def mark_document(page) -> None:
    """A flag on this document: still there afterwards means nothing navigated away."""
    if page.js_enabled:
        page.evaluate("window.sameDocument = true")


def still_same_document(page) -> bool:
    return page.evaluate("window.sameDocument === true")


def role_card(page, name: str):
    return page.get_by_role("form", name=name, exact=True)


def counts(card) -> list[str]:
    return [" ".join(item.split()) for item in card.locator("ul.counts li").all_inner_texts()]


def test_clinic_mode_required_after_checking_who_it_affects(page, live_server, clinic):
    base = live_server.url
    open_admin(page, base, clinic)
    settings = page.locator("#settings-form")
    assert settings.get_by_role("radio", name=re.compile("^Off")).is_checked()
    shots(page, "40-admin-security")

    settings.get_by_role("radio", name=re.compile("^Required")).check()
    settings.get_by_role("checkbox", name=re.compile("^Email")).uncheck()
    mark_document(page)
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        settings.get_by_role("button", name="Save settings").click()
    confirm = page.locator("section.confirm")
    page.get_by_role("heading", name="Check before saving").wait_for()
    assert urlparse(page.url).path == "/admin/security"
    if page.js_enabled:  # swapped into the page by htmx: same document, same title
        assert posted.value.request.headers.get("hx-request") == "true"
        assert still_same_document(page)
        assert page.title() == "Security settings · Harbour Clinic"
    else:  # its own page
        assert page.title() == "Check before saving · Harbour Clinic"
        assert page.get_by_role("heading", name="Security settings").count() == 0
    items = [" ".join(i.split()) for i in confirm.locator("ul.impact li").all_inner_texts()]
    assert items == [
        "Two-step sign-in becomes required for everyone, except where a role or a person's "
        "own rule says otherwise.",
        "Email will no longer be allowed.",
    ]
    assert confirm.locator("dl.facts dt").all_inner_texts() == ["1 person", "5 people"]
    facts = " ".join(confirm.locator("dl.facts").inner_text().split())
    assert "1 person loses their only way to get a code" in facts
    assert "5 people have not set it up yet and will have to at their next sign-in" in facts
    with live_server.app.app_context():  # nothing saved yet
        assert policy.current().mode == "off"
    shots(page, "41-admin-confirm")

    mark_document(page)
    confirm.get_by_role("button", name="Save these settings").click()
    page.get_by_role("status").filter(has_text="Settings saved.").wait_for()
    assert page.get_by_role("status").all_inner_texts() == ["Settings saved."]  # not per role
    assert urlparse(page.url).path == "/admin/security"
    if page.js_enabled:
        assert still_same_document(page)
    settings = page.locator("#settings-form")
    assert settings.get_by_role("radio", name=re.compile("^Required")).is_checked()
    assert not settings.get_by_role("checkbox", name=re.compile("^Email")).is_checked()
    # The role counts follow (out of band with htmx): the email-only person is not set up now.
    practitioners = role_card(page, "Practitioner")
    assert "Follows the clinic setting (Required)." in practitioners.inner_text()
    assert counts(practitioners) == ["2 set up", "3 not set up yet", "0 exempt"]
    with live_server.app.app_context():
        saved = policy.current()
        assert (saved.mode, saved.methods) == ("required", ("totp",))


def test_reception_required_from_a_date(page, live_server, clinic):
    base = live_server.url
    go_live = clinic_today(live_server) + timedelta(days=30)
    open_admin(page, base, clinic)
    card = role_card(page, "Reception")
    assert "Follows the clinic setting (Off)." in card.inner_text()
    card.get_by_label("Two-step sign-in").select_option(label="Required")
    card.get_by_label("Required from").fill(go_live.isoformat())
    mark_document(page)
    card.get_by_role("button", name="Save Reception").click()
    page.get_by_role("status").filter(has_text="Reception: saved.").wait_for()
    if page.js_enabled:  # the card alone was swapped
        assert still_same_document(page)
        assert urlparse(page.url).path == "/admin/security"
    else:
        assert urlparse(page.url).path == "/admin/security"
        assert urlparse(page.url).fragment == f"role-{reception_id(live_server)}"
    card = role_card(page, "Reception")
    rule = " ".join(card.locator("p.rule").inner_text().split())
    assert rule == (
        f"Required from {as_people_read_it(go_live)}, in 30 days. "
        "Until then its people may skip setup."
    )
    # Lou has an app, Robin and Kim have nothing yet, Max is exempt; the deactivated one
    # does not count.
    assert counts(card) == ["1 set up", "2 not set up yet", "1 exempt"]
    assert card.get_by_label("Two-step sign-in").input_value() == "required"
    assert card.get_by_label("Required from").input_value() == go_live.isoformat()
    card.scroll_into_view_if_needed()
    shots(page, "42-admin-role-saved")
    with live_server.app.app_context():
        role = db.session.scalar(sa.select(Role).where(Role.name == "Reception"))
        assert (role.mfa_mode, role.mfa_required_from) == ("required", go_live)


def test_reception_may_skip_until_the_go_live_date_and_not_after(page, live_server, clinic):
    base = live_server.url
    today = clinic_today(live_server)
    go_live = today + timedelta(days=30)
    set_reception_go_live(live_server, go_live)
    skip = f"Skip for now: required from {as_people_read_it(go_live)}"

    sign_in_with_password(page, base, FRONT_DESK)
    wait_for_step(page, base, "/mfa/setup", "Set up two-step sign-in")
    assert page.get_by_role("button", name=skip, exact=True).is_visible()
    shots(page, "44-wizard-skip-until")
    page.get_by_role("button", name=skip, exact=True).click()
    page.wait_for_url(base + "/")
    assert page.get_by_role("heading", name="Welcome, Robin Front").is_visible()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/sign-in\?signed_out=1$"))

    set_reception_go_live(live_server, today)  # the day has come
    sign_in_with_password(page, base, FRONT_DESK)
    wait_for_step(page, base, "/mfa/setup", "Set up two-step sign-in")
    assert page.get_by_role("button", name=re.compile("^Skip for now")).count() == 0
    assert page.get_by_role("button", name="Don't use multi-factor authentication").count() == 0
    assert page.get_by_role("button", name="Cancel and sign out").is_visible()
    page.goto(base + "/")
    wait_for_step(page, base, "/mfa/setup", "Set up two-step sign-in")


def test_one_person_exempt(page, live_server, clinic):
    base = live_server.url
    kim = clinic.ids["desk2@clinic.example"]
    open_admin(page, base, clinic)
    page.get_by_label("Set a rule for one person: their email address").fill("Desk2@Clinic.example")
    page.get_by_role("button", name="Open", exact=True).click()
    page.get_by_role("heading", name="Kim Desk", level=1).wait_for()
    assert urlparse(page.url).path == f"/admin/users/{kim}"
    rules = page.locator("#user-rules-form")
    assert " ".join(rules.locator("p.rule").inner_text().split()) == (
        "Now: Not asked to set it up (the clinic has it off)."
    )
    assert rules.get_by_role("radio", name=re.compile("^Clinic default")).is_checked()

    rules.get_by_role("radio", name=re.compile("^Exempt")).check()
    mark_document(page)
    rules.get_by_role("button", name="Save", exact=True).click()
    page.get_by_role("status").filter(has_text="Saved.").wait_for()
    assert urlparse(page.url).path == f"/admin/users/{kim}"
    if page.js_enabled:
        assert still_same_document(page)
    rules = page.locator("#user-rules-form")
    assert rules.get_by_role("radio", name=re.compile("^Exempt")).is_checked()
    assert " ".join(rules.locator("p.rule").inner_text().split()) == (
        "Now: Not asked for a code: exempt by an administrator."
    )
    shots(page, "43-admin-user")
    with live_server.app.app_context():
        assert db.session.get(User, kim).mfa_override == "exempt"

    page.get_by_role("link", name="Security settings").click()
    exceptions = page.get_by_role("region", name="People with their own rule")
    assert "Kim Desk: exempt" in exceptions.inner_text()
