"""The audit log viewer (ADM-9): newest first, filters by person, event, clinic days and IP,
keyset pages ("Older"/"Newer" carry a cursor, never an OFFSET), words for each event, details
escaped, and no route that changes an event."""

from __future__ import annotations

import ast
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from models import AuditEvent, db
from services import audit_log
from services.audit_log import Cursor, Filters
from tests.conftest import AuthActions
from tests.test_admin_access import admin_urls

ADMIN = "boss@clinic.example"
ROOT = Path(__file__).resolve().parent.parent
ROW_ID = re.compile(r'<tr id="event-(\d+)"')
OLDER = re.compile(r'<a href="(/admin/audit\?[^"]*before=[^"]*)"[^>]*>Older events</a>')
NEWER = re.compile(r'<a href="(/admin/audit\?[^"]*after=[^"]*)"[^>]*>Newer events</a>')
# 2026-03-10 in Sydney (UTC+11 in March): midnight there is 13:00 UTC the day before.
SYDNEY = "Australia/Sydney"
BROKEN_LINK = "That page link is not one this page made. Start again from the newest events."


@pytest.fixture
def admin_account(make_user, enrol_totp) -> tuple[int, str]:
    """An Administrator with an authenticator app: (id, secret)."""
    user_id = make_user(ADMIN, role="Administrator", full_name="Alex Admin")
    secret, _ = enrol_totp(user_id)
    return user_id, secret


@pytest.fixture
def admin(auth, admin_account) -> int:
    """The Administrator, signed in on ``client`` (fresh); returns their id."""
    user_id, secret = admin_account
    auth.login(ADMIN)
    assert auth.verify_totp(pyotp.TOTP(secret).now()).status_code == 303
    return user_id


def add_events(app, *events: dict) -> list[int]:
    """Insert events as given (created_at, event, actor_id, ...); their ids, in order."""
    with app.app_context():
        rows = [
            AuditEvent(
                **{"event": "sign_in.succeeded", "ip": "", "user_agent": "", "details": {}, **e}
            )
            for e in events
        ]
        db.session.add_all(rows)
        db.session.commit()
        return [row.id for row in rows]


def newest_first(app, where=None) -> list[int]:
    """Every event id (matching ``where``) in the order the page must show, worked out in
    Python from the rows rather than by the query under test."""
    with app.app_context():
        query = sa.select(AuditEvent.id, AuditEvent.created_at)
        if where is not None:
            query = query.where(where)
        rows = db.session.execute(query).all()
    return [r.id for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]


def shown(response) -> list[int]:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return [int(i) for i in ROW_ID.findall(response.get_data(as_text=True))]


def link(pattern: re.Pattern[str], response) -> str | None:
    match = pattern.search(response.get_data(as_text=True))
    return match.group(1).replace("&amp;", "&") if match else None


T = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
OFFSET = re.compile(r"OFFSET (\?|%\((\w+)\)s|\d+)", re.IGNORECASE)


def offset_values(statement: str, parameters) -> list[object]:
    """The value of each OFFSET in a statement as sent (qmark or pyformat parameters)."""
    values = []
    for match in OFFSET.finditer(statement):
        if match.group(1) == "?":
            values.append(parameters[statement[: match.start()].count("?")])
        elif match.group(2):
            values.append(parameters[match.group(2)])
        else:
            values.append(int(match.group(1)))
    return values


def test_the_new_pages_are_walked_by_the_access_tests(app):
    """tests/test_admin_access.py sends every admin URL from non-admins (404 before CSRF);
    the new ones are in its list, and they only read."""
    urls = admin_urls(app)
    for expected in [
        ("GET", "/admin/audit"),
        ("GET", "/admin/audit.csv"),
        ("GET", "/admin/readiness"),
    ]:
        assert expected in urls
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("admin.audit", "admin.readiness")):
            assert rule.methods == {"GET", "HEAD", "OPTIONS"}, rule


def test_every_page_of_a_hundred_and_twenty_events_with_ties(app, client, admin):
    """50 a page, newest first; events sharing a time are ordered by id; Older walks to the
    end without repeating or skipping one, Newer walks back; no statement uses OFFSET."""
    times = [T + timedelta(minutes=n // 3) for n in range(120)]  # three events per minute
    add_events(app, *({"created_at": t, "event": "mfa.code_failed"} for t in times))
    expected = newest_first(app)
    assert len(expected) == 122  # and the admin's own sign-in: password, then code
    statements: list[str] = []
    offsets: list[object] = []
    with app.app_context():
        engine = db.engine

    def remember(_conn, _cursor, statement, parameters, *_args):
        statements.append(statement)
        offsets.extend(offset_values(statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", remember)
    try:
        first = client.get("/admin/audit")
        assert shown(first) == expected[:50]
        assert link(NEWER, first) is None
        second = client.get(link(OLDER, first))
        assert shown(second) == expected[50:100]
        third = client.get(link(OLDER, second))
        assert shown(third) == expected[100:]
        assert link(OLDER, third) is None
        back = client.get(link(NEWER, third))
        assert shown(back) == expected[50:100]
        assert shown(client.get(link(NEWER, back))) == expected[:50]
    finally:
        sa.event.remove(engine, "before_cursor_execute", remember)
    # SQLAlchemy writes "LIMIT ? OFFSET ?" for SQLite whatever is asked; the offset is 0.
    assert statements and set(offsets) <= {0}


def test_keyset_pages_of_any_size_cover_everything_once(app):
    """The service alone, three events a page, over runs of equal times: every way through
    gives the same order as sorting the rows."""
    times = [T] * 5 + [T + timedelta(seconds=1)] * 4 + [T + timedelta(seconds=2)] * 3
    add_events(app, *({"created_at": t} for t in times))
    expected = newest_first(app)
    with app.app_context():
        seen: list[int] = []
        page = audit_log.page(Filters(), size=3)
        seen += [e.id for e in page.entries]
        while page.older:
            page = audit_log.page(Filters(), before=page.older, size=3)
            seen += [e.id for e in page.entries]
        assert seen == expected
        back: list[int] = [e.id for e in page.entries]
        while page.newer:
            page = audit_log.page(Filters(), after=page.newer, size=3)
            back = [e.id for e in page.entries] + back
        assert back == expected


def test_filters_return_the_right_rows(app, client, admin, make_user):
    """By person (as actor or as subject), by event, by clinic days (Sydney's, not UTC's),
    by IP, and all together."""
    app.config["MFA_TIME_ZONE"] = SYDNEY
    ana = make_user("ana@clinic.example")
    bo = make_user("bo@clinic.example")
    sydney_midnight = datetime(2026, 3, 9, 13, 0, tzinfo=UTC)  # 10 March begins in Sydney
    ids = add_events(
        app,
        {
            "created_at": sydney_midnight - timedelta(seconds=1),
            "actor_id": ana,
            "subject_id": ana,
            "ip": "203.0.113.7",
        },
        {
            "created_at": sydney_midnight,
            "actor_id": admin,
            "subject_id": ana,
            "event": "admin.user_rules_changed",
            "ip": "203.0.113.7",
        },
        {
            "created_at": sydney_midnight + timedelta(hours=23, minutes=59),
            "subject_id": bo,
            "event": "sign_in.password_failed",
            "ip": "198.51.100.2",
        },
        {
            "created_at": sydney_midnight + timedelta(days=1),
            "actor_id": bo,
            "subject_id": bo,
            "ip": "2001:db8::1",
        },
    )
    before_day, at_midnight, late_on_the_day, next_day = ids

    def ids_for(**query: str) -> list[int]:
        return [i for i in shown(client.get("/admin/audit", query_string=query)) if i in ids]

    assert ids_for(user="ana@clinic.example") == [at_midnight, before_day]
    assert ids_for(user=" Ana@Clinic.EXAMPLE ") == [at_midnight, before_day]
    assert ids_for(user=ADMIN) == [at_midnight]  # as actor
    assert ids_for(user="bo@clinic.example") == [next_day, late_on_the_day]
    assert ids_for(event="sign_in.password_failed") == [late_on_the_day]
    assert ids_for(**{"from": "2026-03-10", "to": "2026-03-10"}) == [late_on_the_day, at_midnight]
    assert ids_for(**{"to": "2026-03-09"}) == [before_day]
    assert ids_for(**{"from": "2026-03-11"}) == [next_day]
    assert ids_for(ip="203.0.113.7") == [at_midnight, before_day]
    assert ids_for(ip="2001:DB8:0::1") == [next_day]  # written another way, the same address
    assert ids_for(
        user="ana@clinic.example",
        event="admin.user_rules_changed",
        ip="203.0.113.7",
        **{"from": "2026-03-10"},
    ) == [at_midnight]
    nobody = client.get("/admin/audit", query_string={"user": "who@clinic.example"})
    assert nobody.status_code == 200
    assert "Nobody has the email address who@clinic.example, so no events match." in (
        nobody.get_data(as_text=True)
    )
    assert shown(client.get("/admin/audit", query_string={"event": "keys.rotated"})) == []


def test_a_persons_filter_pages_through_both_roles_in_order(app, client, admin, make_user):
    """For one person the events where they acted and those done to them are read apart and
    merged: pages still come in order, each event once (also when they are both)."""
    cy = make_user("cy@clinic.example")
    other = make_user("other@clinic.example")
    events = []
    for n in range(130):
        who = [(cy, cy), (admin, cy), (cy, other), (other, other)][n % 4]
        events.append(
            {"created_at": T + timedelta(seconds=n // 2), "actor_id": who[0], "subject_id": who[1]}
        )
    add_events(app, *events)
    expected = newest_first(app, sa.or_(AuditEvent.actor_id == cy, AuditEvent.subject_id == cy))
    assert len(expected) == 98
    seen = []
    page = client.get("/admin/audit", query_string={"user": "cy@clinic.example"})
    seen += shown(page)
    while (older := link(OLDER, page)) is not None:
        page = client.get(older)
        seen += shown(page)
    assert seen == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"event": "made.up event"}, "Choose an event from the list."),
        ({"from": "10/03/2026"}, "Enter a date as year-month-day, for example 2026-11-24."),
        ({"to": "0001-01-01"}, "Enter a date between 1970 and 2999."),
        ({"from": "2026-03-10", "to": "2026-03-09"}, "The last day is before the first day."),
        ({"ip": "10.0.0.256"}, "Enter one IP address, for example 203.0.113.7 or 2001:db8::1."),
        ({"user": "x" * 251 + "@a.b"}, "An email address is at most 254 characters."),
        ({"before": "12-x"}, BROKEN_LINK),
        ({"after": "9" * 30 + "-1"}, BROKEN_LINK),
        ({"before": "99999999999999999-1"}, BROKEN_LINK),
        ({"before": "1-1", "after": "1-1"}, "A page link carries either Older or Newer, not both."),
    ],
)
def test_bad_filters_and_links_are_refused_with_a_message(client, admin, query, message):
    response = client.get("/admin/audit", query_string=query)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert ROW_ID.search(page) is None
    assert '<h2 id="filters-heading">Filter</h2>' in page  # the form is there to correct it


def test_an_event_of_newer_code_can_still_be_filtered(app, client, admin):
    """A well-formed name the table does not know is offered in the list and shown raw."""
    [new] = add_events(app, {"created_at": T, "event": "api.token_created"})
    page = client.get("/admin/audit", query_string={"event": "api.token_created"})
    assert shown(page) == [new]
    assert '<option selected value="api.token_created">api.token_created</option>' in (
        page.get_data(as_text=True)
    )


def test_events_read_as_words_and_details_are_escaped(app, client, admin, make_user):
    """A label per event (the raw name for one without), the browser as "Browser on OS",
    before/after as one line per setting, and everything escaped: nothing in an event can
    put markup on the admin's page."""
    ana = make_user("ana@clinic.example")
    add_events(
        app,
        {
            "created_at": T,
            "event": "admin.policy_changed",
            "actor_id": admin,
            "user_agent": "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0 Safari/537.36",
            "ip": "203.0.113.7",
            "details": {
                "before": {"mode": "off"},
                "after": {"mode": "required"},
                "not_enrolled": 3,
            },
        },
        {
            "created_at": T + timedelta(seconds=1),
            "event": "x.<img src=x onerror=alert(1)>",
            "subject_id": ana,
            "user_agent": "<script>alert('ua')</script>",
            "details": {"note": "<b>bold</b> & <script>alert(1)</script>", "list": ["a", "<i>"]},
        },
        {
            "created_at": T + timedelta(seconds=2),
            "event": "keys.rotated",
            "user_agent": "cli",
            "details": {"secrets": 4, "via": "cli"},
        },
    )
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "Security settings changed" in page
    assert "<dt>mode:</dt> <dd>off → required</dd>" in page
    assert "<dt>not enrolled:</dt> <dd>3</dd>" in page
    assert "Chrome on Windows" in page
    assert "Encryption keys rotated" in page and "by the command line" in page
    assert "x.&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<dd>a, &lt;i&gt;</dd>" in page
    for raw in ("<img src=x", "<b>bold", "<script>alert", "<i>"):
        assert raw not in page


def test_htmx_gets_the_results_and_a_plain_request_the_page(client, admin):
    plain = client.get("/admin/audit", query_string={"event": "sign_in.succeeded"})
    partial = client.get(
        "/admin/audit", query_string={"event": "sign_in.succeeded"}, headers={"HX-Request": "true"}
    )
    assert "<h1>Audit log</h1>" in plain.get_data(as_text=True)
    body = partial.get_data(as_text=True)
    assert "<h1>" not in body and "<html" not in body
    assert shown(plain) == shown(partial) != []
    assert "HX-Request" in partial.headers["Vary"]


def test_the_nav_links_the_new_pages(client, admin):
    page = client.get("/admin/audit").get_data(as_text=True)
    assert '<a href="/admin/audit" aria-current="page">Audit log</a>' in page
    assert '<a href="/admin/readiness">Readiness</a>' in page


def test_every_event_the_code_records_has_words(app):
    """Every literal event name passed to audit.record in the app has a label."""
    recorded = set()
    for path in [*ROOT.glob("blueprints/**/*.py"), *ROOT.glob("services/**/*.py"), ROOT / "cli.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", "")) == "record"
                and node.args
            ):
                for arg in ast.walk(node.args[0]):
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        recorded.add(arg.value)
    assert {"sign_in.succeeded", "mfa.factor_replaced", "audit.purged"} <= recorded
    assert recorded - set(audit_log.EVENT_LABELS) == set()


def test_cursor_text_round_trips():
    cursor = Cursor(datetime(2026, 3, 10, 9, 0, 0, 123456, tzinfo=UTC), 42)
    assert Cursor.parse(cursor.text()) == cursor
    for broken in ["", "1", "a-1", "1-", "-1-1", "1-1-1", "1 -1"]:
        with pytest.raises(ValueError):
            Cursor.parse(broken)


def test_a_stale_admin_still_reads_the_log_but_re_authenticates_to_export(app, admin_account):
    """Reading needs no fresh sign-in (like the settings page); the export is a bulk copy of
    who signed in from where, so it does, and nothing is exported or recorded before."""
    auth = AuthActions(app.test_client())
    with time_machine.travel(datetime.now(UTC), tick=False) as clock:
        auth.login(ADMIN)
        assert auth.verify_totp(pyotp.TOTP(admin_account[1]).now()).status_code == 303
        clock.shift(timedelta(minutes=10, seconds=1))
        assert auth.client.get("/admin/audit").status_code == 200
        assert auth.client.get("/admin/readiness").status_code == 200
        export = auth.client.get("/admin/audit.csv?event=sign_in.succeeded&from=2026-01-01")
        assert export.status_code == 303
        assert export.headers["Location"] == (
            "/reauthenticate?next=/admin/audit.csv?event%3Dsign_in.succeeded%26from%3D2026-01-01"
        )
    with app.app_context():
        exported = sa.select(sa.func.count()).where(AuditEvent.event == "audit.exported")
        assert db.session.scalar(exported) == 0


def test_date_filter_days_are_the_clinics(app):
    app.config["MFA_TIME_ZONE"] = SYDNEY
    with app.app_context():
        from services import localtime

        assert localtime.start_of(date(2026, 3, 10)) == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
        assert localtime.start_of(date(2026, 7, 10)) == datetime(2026, 7, 9, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "query",
    [
        "event=a&event=b",
        "event=" + "a" * 65,
        "event=sign_in.succeeded%00",
        "user=%F0%9F%98%80@clinic.example",
        "user=" + "x" * 5000,
        "ip=::ffff:10.0.0.1",
        "ip=" + "1" * 500,
        "from=1970-01-01&to=2999-12-31",
        "from=2026-02-30",
        "before=0-0",
        "before=1-999999999999999999",
        "after=99999999999999-1",
        "before=" + "9" * 500,
        "page=2&offset=50&limit=100000",
    ],
)
def test_hostile_query_strings_get_an_answer_never_a_500(client, admin, query):
    for path in ("/admin/audit", "/admin/audit.csv", "/admin/readiness"):
        response = client.get(f"{path}?{query}")
        response.get_data()
        assert response.status_code in (200, 400), (path, query, response.status_code)
