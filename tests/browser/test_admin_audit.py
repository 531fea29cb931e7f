"""The audit log and the readiness page (issue 9) in real Chromium, JavaScript on and off:
filter the log, page to older events and back, open the readiness page with a role's go-live
date and a profile that looks shared. Screenshots at the test's width and a phone's land in
tests/browser/screenshots/."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
import sqlalchemy as sa

from models import AuditEvent, Role, UserSession, db
from services import localtime
from tests.browser import test_admin
from tests.browser.test_admin import (
    FRONT_DESK,
    Clinic,
    mark_document,
    open_admin,
    shots,
    still_same_document,
)

clinic = test_admin.clinic  # the same staff and Administrator as the settings tests

pytestmark = pytest.mark.browser

WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 Safari/604.1"
MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) Gecko/20100101 Firefox/133.0"


@pytest.fixture
def history(live_server, clinic: Clinic) -> dict[str, int]:
    """A week of events: 70 wrong codes for the front desk among sign-ins and a settings
    change; Robin's profile used from three devices; Reception required in 12 days."""
    app = live_server.app
    robin, admin = clinic.ids[FRONT_DESK], clinic.ids["admin@clinic.example"]
    now = datetime.now(UTC) - timedelta(hours=1)
    with app.app_context():
        rows = []
        for n in range(150):
            at = now - timedelta(minutes=37 * n)
            if n % 2:
                rows.append(
                    AuditEvent(
                        created_at=at,
                        event="mfa.code_failed",
                        subject_id=robin,
                        ip=f"10.0.0.{n % 3 + 1}",
                        user_agent=WINDOWS,
                        details={"method": "totp", "attempt": n},
                    )
                )
            else:
                rows.append(
                    AuditEvent(
                        created_at=at,
                        event="sign_in.succeeded",
                        actor_id=robin,
                        subject_id=robin,
                        ip="10.0.0.1",
                        user_agent=IPHONE,
                        details={"method": "totp"},
                    )
                )
        rows.append(
            AuditEvent(
                created_at=now - timedelta(minutes=5),
                event="admin.policy_changed",
                actor_id=admin,
                ip="127.0.0.1",
                user_agent=MAC,
                details={
                    "before": {"mode": "off", "methods": ["totp"]},
                    "after": {"mode": "required", "methods": ["totp", "email"]},
                },
            )
        )
        db.session.add_all(rows)
        for n, (agent, ip) in enumerate(
            [(WINDOWS, "10.0.0.1"), (IPHONE, "10.0.0.1"), (MAC, "203.0.113.9")]
        ):
            began = now - timedelta(days=n + 1)
            db.session.add(
                UserSession(
                    user_id=robin,
                    state="ended",
                    created_at=began,
                    signed_in_at=began,
                    last_seen_at=began,
                    ended_at=began + timedelta(hours=2),
                    ip=ip,
                    user_agent=agent,
                    token_hash=None,
                )
            )
        reception = db.session.scalar(sa.select(Role).where(Role.name == "Reception"))
        reception.mfa_mode = "required"
        reception.mfa_required_from = localtime.today() + timedelta(days=12)
        db.session.commit()
    return {"robin": robin}


def open_from_the_nav(page, base: str, clinic: Clinic, name: str, path: str) -> None:
    """Sign in as the Administrator and follow the admin menu to the page called ``name``."""
    open_admin(page, base, clinic)
    page.get_by_role("navigation", name="Admin").get_by_role("link", name=name).click()
    page.get_by_role("heading", name=name, level=1).wait_for()
    assert urlparse(page.url).path == path


def rows_shown(page) -> list[int]:
    ids = page.locator("table.audit-table tbody tr").evaluate_all("rows => rows.map(r => r.id)")
    return [int(i.removeprefix("event-")) for i in ids]


def events_of(live_server, event: str) -> list[int]:
    with live_server.app.app_context():
        rows = db.session.execute(
            sa.select(AuditEvent.id, AuditEvent.created_at).where(AuditEvent.event == event)
        ).all()
    return [r.id for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]


def test_filter_the_audit_log_and_page_to_older_events(page, live_server, clinic, history):
    open_from_the_nav(page, live_server.url, clinic, "Audit log", "/admin/audit")
    first = page.locator("table.audit-table tbody tr").first
    assert "Signed in" in first.inner_text()  # the admin's own sign-in, newest
    assert len(rows_shown(page)) == 50
    change = page.locator("table.audit-table tbody tr", has_text="Security settings changed")
    assert "mode: off → required" in change.inner_text()
    shots(page, "50-admin-audit")

    filters = page.get_by_role("form", name="Filter")
    filters.get_by_label("Event", exact=True).select_option(label="Wrong code")
    filters.get_by_label("Person (email address)").fill(FRONT_DESK.upper())
    mark_document(page)
    filters.get_by_role("button", name="Show events").click()
    page.wait_for_url(re.compile(r".*event=mfa\.code_failed.*"))
    expected = events_of(live_server, "mfa.code_failed")
    page.wait_for_function("document.querySelectorAll('table.audit-table tbody tr').length == 50")
    assert rows_shown(page) == expected[:50]
    if page.js_enabled:  # swapped in by htmx, the address bar kept in step
        assert still_same_document(page)
    query = parse_qs(urlparse(page.url).query)
    assert query["event"] == ["mfa.code_failed"]
    assert query["user"] == [FRONT_DESK.upper()]
    assert page.get_by_label("Event", exact=True).input_value() == "mfa.code_failed"
    assert page.get_by_role("link", name="Newer events").count() == 0

    mark_document(page)
    page.get_by_role("link", name="Older events").click()
    page.wait_for_url(re.compile(r".*before=.*"))
    page.wait_for_function(
        f"document.querySelectorAll('table.audit-table tbody tr').length == {len(expected) - 50}"
    )
    assert rows_shown(page) == expected[50:]
    assert page.get_by_role("link", name="Older events").count() == 0
    if page.js_enabled:
        assert still_same_document(page)
    shots(page, "51-admin-audit-older")

    page.get_by_role("link", name="Newer events").click()
    page.wait_for_url(re.compile(r".*after=.*"))
    page.wait_for_function("document.querySelectorAll('table.audit-table tbody tr').length == 50")
    assert rows_shown(page) == expected[:50]


def test_a_bad_filter_says_what_to_fix(page, live_server, clinic, history):
    base = live_server.url
    open_admin(page, base, clinic)
    page.goto(base + "/admin/audit")
    filters = page.get_by_role("form", name="Filter")
    filters.get_by_label("IP address").fill("10.0.0.300")
    filters.get_by_role("button", name="Show events").click()
    page.get_by_text("Enter one IP address, for example 203.0.113.7 or 2001:db8::1.").wait_for()
    assert page.get_by_label("IP address").get_attribute("aria-invalid") == "true"
    assert page.locator("table.audit-table").count() == 0
    shots(page, "53-admin-audit-bad-filter")


def test_the_readiness_page(page, live_server, clinic, history):
    open_from_the_nav(page, live_server.url, clinic, "Readiness", "/admin/readiness")
    with live_server.app.app_context():
        reception = db.session.scalar(sa.select(Role).where(Role.name == "Reception"))
        go_live = reception.mfa_required_from
    row = page.locator(f"#readiness-role-{reception.id}")
    text = " ".join(row.inner_text().split())
    assert f"Required from {go_live.day} {go_live:%B %Y}, in 12 days." in text
    # Lou has an app; Robin and Kim have nothing; Max is exempt (see tests/browser/test_admin.py)
    numbers = row.get_by_role("link").all_inner_texts()
    assert [" ".join(n.split()) for n in numbers] == [
        "1 Reception: set up",
        "2 Reception: not set up yet",
        "1 Reception: exempt",
    ]
    assert row.get_by_role("link").nth(1).get_attribute("href") == (
        f"/admin/users?role={reception.id}&status=not_enrolled"
    )
    shared = page.get_by_role("article", name=re.compile("Robin Front"))
    assert "Signed in from 3 devices in 7 days" in shared.inner_text()
    assert "Firefox on macOS" in shared.inner_text()
    shots(page, "52-admin-readiness")
