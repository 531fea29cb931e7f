"""The users list (ADM-7, PERF-2): search, filters, sort and pages over a seeded clinic, each
answer worked out again here from the seed rather than from the app's rules; the statements
a page costs, the same for 25 rows as for 200; refused query strings.

Expected answers use the clinic's default policy (the authenticator app only): someone is
"set up" exactly when they have an app.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from models import Role, SignInThrottle, User, UserSession, db
from models.sessions import ENDED
from services import throttle
from tests.admin_helpers import text
from tests.clinic_seed import seed_clinic
from tests.conftest import ADMIN

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


def ids_on(response) -> list[int]:
    """The people listed, in order (each row's name links to their page)."""
    body = response.get_data(as_text=True)
    return [
        int(i) for i in re.findall(r'<td data-label="Name"><a href="/admin/users/(\d+)">', body)
    ]


def people(app) -> list[User]:
    with app.app_context():
        rows = db.session.scalars(sa.select(User).order_by(User.id)).all()
        for user in rows:
            _ = user.role.name
        return list(rows)


@pytest.fixture
def clinic(app, admin):
    """300 seeded people (every mix of factors, exempt, admins, deactivated) plus: two
    invited, two locked (password; code), two with a bypass (one expired), sign-ins."""
    traits = seed_clinic(app)
    now = datetime.now(UTC)
    with app.app_context():
        users = {u.email: u for u in db.session.scalars(sa.select(User))}
        for n in (3, 4):
            users[f"person{n}@clinic.example"].password_hash = None
        db.session.add(
            SignInThrottle(
                key=throttle.email_key("person5@clinic.example"),
                failures=100,
                last_failure_at=now,
            )
        )
        users["person6@clinic.example"].mfa_locked_until = now + timedelta(minutes=15)
        users["person7@clinic.example"].mfa_bypass_until = now + timedelta(hours=8)
        users["person8@clinic.example"].mfa_bypass_until = now - timedelta(minutes=1)
        for n in range(10, 40):
            db.session.add(
                UserSession(
                    user_id=users[f"person{n}@clinic.example"].id,
                    state=ENDED,
                    created_at=now,
                    last_seen_at=now,
                    signed_in_at=now - timedelta(hours=n),
                )
            )
        db.session.commit()
        ids = {email: u.id for email, u in users.items()}
    traits["invited"] = {ids["person3@clinic.example"], ids["person4@clinic.example"]}
    traits["locked"] = {ids["person5@clinic.example"], ids["person6@clinic.example"]}
    traits["bypass"] = {ids["person7@clinic.example"]}
    traits["ids"] = ids
    return traits


def name_key(user: User) -> tuple[str, int]:
    return ((user.full_name or user.email).lower(), user.id)


def every_page(client, url: str) -> list[int]:
    """The ids of every page of ``url``, following the Next links."""
    seen: list[int] = []
    for _ in range(100):
        response = client.get(url)
        assert response.status_code == 200
        seen += ids_on(response)
        following = re.search(r'<a class="button" href="([^"]+)"[^>]*>Next', text(response))
        if following is None:
            return seen
        url = following.group(1)
    raise AssertionError("more than 100 pages")


def test_everyone_sorted_by_name_across_pages(app, client, clinic):
    everyone = sorted(people(app), key=name_key)
    first = client.get("/admin/users")
    assert first.status_code == 200
    assert f'<h2 id="results-heading">{len(everyone)} people' in text(first)
    assert ids_on(first) == [u.id for u in everyone[:25]]
    assert every_page(client, "/admin/users?per_page=50") == [u.id for u in everyone]


def test_search_by_part_of_a_name_or_email(app, client, clinic):
    response = client.get("/admin/users?q=SON 1&per_page=200")
    expected = sorted(
        (u for u in people(app) if "son 1" in (u.full_name or "").lower()), key=name_key
    )
    assert ids_on(response) == [u.id for u in expected]
    assert len(expected) == 111  # Person 1, 10-19, 100-199
    by_email = client.get("/admin/users?q=boss@")
    assert ids_on(by_email) == [clinic["ids"][ADMIN]]
    # LIKE's wildcards are plain characters here.
    assert ids_on(client.get("/admin/users?q=%25")) == []
    assert ids_on(client.get("/admin/users?q=_")) == []


def test_filter_by_role_and_status(app, client, clinic):
    everyone = people(app)
    reception = next(u.role_id for u in everyone if u.role.name == "Reception")
    response = client.get(f"/admin/users?role={reception}&status=not_enrolled&per_page=200")
    expected = [
        u.id
        for u in sorted(everyone, key=name_key)
        if u.role_id == reception
        and u.active
        and u.password_hash is not None
        and u.id not in clinic["totp"]
        and u.id not in clinic["exempt"]
    ]
    assert ids_on(response) == expected and len(expected) > 20


@pytest.mark.parametrize(
    "status", ["enrolled", "exempt", "locked", "bypass", "invited", "deactivated"]
)
def test_each_status_filter(app, client, clinic, status):
    everyone = sorted(people(app), key=name_key)
    active = {u.id for u in everyone if u.active and u.password_hash is not None}
    expected = {
        "enrolled": active & (clinic["totp"] | {clinic["ids"][ADMIN]}),
        "exempt": (active & clinic["exempt"]) - clinic["totp"],
        "locked": clinic["locked"],
        "bypass": clinic["bypass"],
        "invited": clinic["invited"],
        "deactivated": clinic["inactive"],
    }[status]
    response = client.get(f"/admin/users?status={status}&per_page=200")
    assert ids_on(response) == [u.id for u in everyone if u.id in expected]
    assert len(expected) >= 1


def test_statuses_shown_in_the_rows(app, client, clinic):
    ids = clinic["ids"]
    body = text(client.get("/admin/users?per_page=200")) + text(
        client.get("/admin/users?per_page=200&page=2")
    )
    rows = dict(re.findall(r'href="/admin/users/(\d+)">.*?class="status">(.*?)</td>', body, re.S))
    assert len(rows) == 301

    def status_of(n: int) -> str:
        return " ".join(
            re.sub(r"<[^>]+>", " ", rows[str(ids[f"person{n}@clinic.example"])]).split()
        )

    assert status_of(3) == "Invited no password yet"
    assert status_of(5).endswith("Locked") and status_of(6).endswith("Locked")
    assert re.fullmatch(r".* Bypass pending until \d+ \w{3} \d{4}, \d\d:\d\d", status_of(7))
    assert "Bypass" not in status_of(8)  # expired
    inactive = next(i for i in clinic["inactive"] if str(i) in rows)
    assert rows[str(inactive)].strip().startswith('<span class="tag tag-off">Deactivated</span>')
    admin_row = " ".join(re.sub(r"<[^>]+>", " ", rows[str(ids[ADMIN])]).split())
    assert admin_row == "Set up: Authenticator app"


@pytest.mark.parametrize(
    ("sort", "direction"),
    [("name", "desc"), ("email", "asc"), ("role", "asc"), ("last_sign_in", "desc")],
)
def test_sort(app, client, clinic, sort, direction):
    everyone = people(app)
    with app.app_context():
        last = dict(
            db.session.execute(
                sa.select(UserSession.user_id, sa.func.max(UserSession.signed_in_at)).group_by(
                    UserSession.user_id
                )
            ).all()
        )
    descending = direction == "desc"
    if sort == "name":
        ordered = sorted(everyone, key=name_key, reverse=True)
        # Ties (none here: names are unique) would be broken by name then id ascending.
    elif sort == "email":
        ordered = sorted(everyone, key=lambda u: (u.email, *name_key(u)))
    elif sort == "role":
        ordered = sorted(everyone, key=lambda u: (u.role.name.lower(), *name_key(u)))
    else:
        signed = sorted(
            (u for u in everyone if u.id in last),
            key=lambda u: (-last[u.id].timestamp(), *name_key(u)),
        )
        never = sorted((u for u in everyone if u.id not in last), key=name_key)
        ordered = signed + never
        assert len(signed) == 31  # and the admin, signed in now
    url = f"/admin/users?sort={sort}&dir={direction}&per_page=100"
    assert every_page(client, url) == [u.id for u in ordered]
    first = client.get(url)
    label = {"name": "Name", "email": "Email", "role": "Role", "last_sign_in": "Last sign-in"}
    assert re.search(
        rf'<th scope="col" aria-sort="{"descending" if descending else "ascending"}">\s*'
        rf'<a class="sort" [^>]*>{label[sort]}<span aria-hidden="true"> [▲▼]</span></a>',
        text(first),
    )


def test_a_page_past_the_end_shows_the_last_one(app, client, clinic):
    everyone = sorted(people(app), key=name_key)
    response = client.get("/admin/users?per_page=200&page=99")
    assert response.status_code == 200
    assert ids_on(response) == [u.id for u in everyone[200:]]
    assert "Page 2 of 2" in text(response)


def test_htmx_gets_the_results_and_the_count_out_of_band(client, clinic):
    response = client.get("/admin/users?q=person 4", headers={"HX-Request": "true"})
    body = text(response)
    assert response.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith('<h2 id="results-heading">11 people')
    assert (
        '<p id="results-status" class="visually-hidden" role="status" hx-swap-oob="true">'
        "11 people found.</p>"
    ) in body
    assert "HX-Request" in response.headers["Vary"]


def test_the_search_form_works_with_and_without_javascript(client, admin):
    body = text(client.get("/admin/users?q=bo"))
    form = re.search(r"<form method=\"get\" action=\"/admin/users\".*?</form>", body, re.S).group(0)
    assert 'role="search"' in form and "data-keep-focus" in form
    search = re.search(r"<input[^>]*name=\"q\"[^>]*>", form).group(0)
    for attribute in [
        'type="search"',
        'value="bo"',
        'hx-get="/admin/users"',
        'hx-trigger="input changed delay:300ms, search"',
        'hx-target="#results"',
        'hx-push-url="true"',
        'hx-include="closest form"',
    ]:
        assert attribute in search, attribute
    assert '<button type="submit">Search</button>' in form


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=asleep", "Status: Not a valid choice."),
        ("role=999", "Role: Not a valid choice."),
        ("sort=password_hash", "Sort by: Not a valid choice."),
        ("dir=sideways", "Order: Not a valid choice."),
        ("per_page=100000", "People per page: Not a valid choice."),
        ("page=0", "Page: Choose a page from 1 to 100000."),
        ("page=abc", "Page: Not a valid integer value."),
        ("q=" + "x" * 101, "Search by name or email: Field cannot be longer than 100 characters."),
    ],
)
def test_a_made_up_query_string_is_a_400_that_says_why(client, admin, query, message):
    response = client.get(f"/admin/users?{query}")
    assert response.status_code == 400
    assert f"<li>{message}</li>" in text(response)
    assert ids_on(response) == []


def count_statements(app, client, url: str) -> int:
    counted = []

    def count(*_args) -> None:
        counted.append(1)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        response = client.get(url)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 200
    return len(counted)


@pytest.mark.parametrize(
    "query",
    ["", "&status=locked&sort=last_sign_in&dir=desc", "&q=person&sort=role", "&status=enrolled"],
)
def test_statements_per_page_do_not_grow_with_the_page_size(app, client, clinic, query):
    """PERF-2: the users page's SQL is fixed, not one statement per person shown."""
    client.get("/admin/users")  # the first request of a session may refresh its row
    small = count_statements(app, client, f"/admin/users?per_page=25{query}")
    large = count_statements(app, client, f"/admin/users?per_page=200{query}")
    assert small == large, (small, large)
    assert small <= 8, small
    # And the page really did show more people.
    assert len(ids_on(client.get(f"/admin/users?per_page=200{query}"))) > 25 or "locked" in query


def test_the_sql_password_lock_agrees_with_sign_in(app, make_user):
    """``throttle.email_locked_sql`` is the rule ``throttle.check`` applies at sign-in."""
    emails = [f"p{n}@clinic.example" for n in range(6)] + ["zoë@clinic.example"]
    with time_machine.travel(T0, tick=False), app.app_context():
        for email in emails:
            make_user(email)
        rows = [
            (emails[0], 100, None),  # hard lock: an admin must unlock
            (emails[1], 6, T0 + timedelta(seconds=2)),  # waiting out a delay
            (emails[2], 6, T0 - timedelta(seconds=1)),  # the delay is over
            (emails[3], 3, None),  # free tries left
            (emails[6], 100, None),
        ]
        for email, failures, until in rows:
            db.session.add(
                SignInThrottle(
                    key=throttle.email_key(email),
                    failures=failures,
                    last_failure_at=T0,
                    blocked_until=until,
                )
            )
        db.session.commit()
        in_sql = set(
            db.session.scalars(
                sa.select(User.email).where(throttle.email_locked_sql(User.email, T0))
            )
        )
        by_python = {e for e in emails if throttle.check(throttle.email_key(e)).block is not None}
        assert in_sql == by_python == {emails[0], emails[1], emails[6]}
        keys = db.session.scalars(sa.select(throttle.EmailKeySql(User.email)).order_by(User.id))
        assert list(keys) == [throttle.email_key(e) for e in emails]


def test_the_nav_links_to_the_users_page(client, admin):
    body = text(client.get("/admin/security"))
    assert '<a href="/admin/users">Users</a>' in body
    page = text(client.get("/admin/users"))
    assert '<a href="/admin/users" aria-current="page">Users</a>' in page
    assert "<title>Users · Harbour Clinic</title>" in page


def test_roles_come_from_the_database(app, client, admin):
    with app.app_context():
        db.session.add(Role(name="Locum"))
        db.session.commit()
        locum = db.session.scalar(sa.select(Role.id).where(Role.name == "Locum"))
    body = text(client.get("/admin/users"))
    assert f'<option value="{locum}">Locum</option>' in body
