"""The readiness page (ADM-8, seed 001): per role who is set up, not yet, exempt, with the
go-live date and days left, each number linking to the users list; people whose mobile
number or email address needs fixing; profiles that look shared, with the evidence."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from blueprints.admin.links import users_list
from models import AuditEvent, MfaFactor, Role, User, UserSession, db
from services import localtime, policy, readiness, shared_profiles
from tests import test_audit_log
from tests.clinic_seed import seed_clinic

ROLE_LINK = re.compile(r'href="/admin/users\?role=(\d+)&amp;status=(\w+)">(\d+)<')
TOTAL_LINK = re.compile(r'href="/admin/users\?status=(\w+)">(\d+)<')
WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 Safari/604.1"
MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) Gecko/20100101 Firefox/133.0"


# The signed-in Administrator of the audit log's tests.
admin_account, admin = test_audit_log.admin_account, test_audit_log.admin


def page_text(client) -> str:
    response = client.get("/admin/readiness")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def section(html: str, heading_id: str) -> str:
    """The HTML from a heading to the next heading of its level or above."""
    start = html.index(f'id="{heading_id}"')
    level = html[html.rindex("<h", 0, start) + 2]
    following = re.compile(rf"<h[1-{level}][ >]")
    end = following.search(html, start)
    return html[start : end.start() if end else len(html)]


def words(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_numbers_match_the_database_for_a_seeded_clinic(app, client, admin, make_user):
    """Each role's three numbers, and the totals, against a count in SQL (the SQL twin of
    the rule, held to the Python one by tests/test_readiness.py); each links to the users
    list filtered to those people."""
    seed_clinic(app, 240)
    for role in ("Administrator", "Reception", "Location"):
        make_user(f"excused-{role.lower()}@clinic.example", role=role, mfa_override="exempt")
    make_user("room4@clinic.example", role="Location")
    with app.app_context():
        policy.update(mode="optional", methods="totp,email", admins_app_only=True)
        db.session.commit()
        clinic = policy.current()
        roles = db.session.scalars(sa.select(Role)).all()
        expected = {}
        for standing in readiness.STANDINGS:
            counts = dict(
                db.session.execute(
                    sa.select(User.role_id, sa.func.count())
                    .where(User.active.is_(True), readiness.standing_is(standing, clinic))
                    .group_by(User.role_id)
                ).all()
            )
            for role in roles:
                expected[(role.id, standing)] = counts.get(role.id, 0)
    html = page_text(client)
    shown = {(int(r), s): int(n) for r, s, n in ROLE_LINK.findall(html)}
    assert shown == expected
    # Every number is worth checking: only Location has nobody set up.
    assert [key for key, n in expected.items() if n == 0] == [(4, "enrolled")]
    totals = {s: int(n) for s, n in TOTAL_LINK.findall(section(html, "roles-heading"))}
    assert totals == {
        s: sum(n for (_, st), n in expected.items() if st == s) for s in readiness.STANDINGS
    }


def test_each_roles_rule_with_its_go_live_date_and_days_left(app, client, admin):
    with app.app_context():
        policy.update(mode="optional")
        today = localtime.today()
        roles = {r.name: r for r in db.session.scalars(sa.select(Role))}
        roles["Reception"].mfa_mode = "required"
        roles["Reception"].mfa_required_from = today + timedelta(days=10)
        roles["Practitioner"].mfa_mode = "required"
        roles["Practitioner"].mfa_required_from = today - timedelta(days=3)
        roles["Location"].mfa_mode = "off"
        db.session.commit()
        ids = {name: role.id for name, role in roles.items()}

    def rule(role: str) -> str:
        row = re.search(rf'<tr id="readiness-role-{ids[role]}">(.*?)</tr>', html, re.S)
        assert row is not None
        return words(row.group(1))

    html = page_text(client)
    soon = today + timedelta(days=10)
    assert rule("Reception").startswith(
        f"Reception Required from {soon.day} {soon:%B %Y}, in 10 days. "
        "Until then its people may skip setup."
    )
    past = today - timedelta(days=3)
    assert rule("Practitioner").startswith(f"Practitioner Required since {past.day} {past:%B %Y}.")
    assert rule("Administrator").startswith("Administrator Follows the clinic setting (Optional).")
    assert rule("Location").startswith("Location Off for this role, whatever the clinic setting.")


def test_people_without_a_mobile_number_when_texts_are_allowed(app, client, admin, make_user):
    """Only people who will be asked and may choose SMS: not the exempt, not Administrators
    while they may only use an app, not the switched off; a number that cannot receive a text
    counts as none."""
    people = {
        "none@clinic.example": make_user("none@clinic.example", full_name="No Number"),
        "bad@clinic.example": make_user("bad@clinic.example", mobile_number="not a number"),
        "landline@clinic.example": make_user(
            "landline@clinic.example", mobile_number="+61298765432"
        ),
        "ok@clinic.example": make_user("ok@clinic.example", mobile_number="+61412345678"),
        "exempt@clinic.example": make_user("exempt@clinic.example", mfa_override="exempt"),
        "admin2@clinic.example": make_user("admin2@clinic.example", role="Administrator"),
        "off@clinic.example": make_user("off@clinic.example", active=False),
    }
    with app.app_context():
        policy.update(mode="optional", methods="totp,sms", admins_app_only=True)
        db.session.commit()
    mobile = section(page_text(client), "mobile-heading")
    listed = re.findall(r'href="/admin/users/(\d+)"', mobile)
    assert sorted(int(i) for i in listed) == sorted(
        people[e] for e in ("none@clinic.example", "bad@clinic.example", "landline@clinic.example")
    )
    assert "No Number" in mobile and "Not set up yet" in mobile
    with app.app_context():
        policy.update(methods="totp")
        db.session.commit()
    mobile = section(page_text(client), "mobile-heading")
    assert "Text messages are not allowed, so nobody needs a mobile number." in mobile
    assert "/admin/users/" not in mobile


def test_email_addresses_never_confirmed(app, client, admin, make_user):
    """Listed: nothing shows the address reaches its owner. Not listed: signed in (a session
    or, once sessions are pruned, the audit log), an emailed code set up, a password reset
    through an emailed link; nor anyone switched off."""
    fresh = make_user("fresh@clinic.example")
    with_session = make_user("session@clinic.example")
    with_factor = make_user("factor@clinic.example")
    reset = make_user("reset@clinic.example")
    logged = make_user("logged@clinic.example")
    failed_only = make_user("failed@clinic.example")
    make_user("gone@clinic.example", active=False)
    now = datetime.now(UTC)
    with app.app_context():
        db.session.add(
            UserSession(user_id=with_session, state="ended", signed_in_at=now, ended_at=now)
        )
        db.session.add(
            MfaFactor(
                user_id=with_factor, kind="email", is_default=True, target="factor@clinic.example"
            )
        )
        db.session.add(AuditEvent(event="password_reset.completed", subject_id=reset))
        db.session.add(AuditEvent(event="sign_in.succeeded", subject_id=logged, actor_id=logged))
        db.session.add(AuditEvent(event="sign_in.password_failed", subject_id=failed_only))
        db.session.commit()
    email = section(page_text(client), "email-heading")
    listed = sorted(int(i) for i in re.findall(r'href="/admin/users/(\d+)"', email))
    assert listed == sorted([fresh, failed_only])


def add_session(
    app,
    user_id: int,
    agent: str,
    ip: str,
    began: datetime,
    ended: datetime | None,
    last_seen: datetime | None = None,
) -> None:
    with app.app_context():
        db.session.add(
            UserSession(
                user_id=user_id,
                token_hash=None if ended else secrets.token_bytes(32),
                state="ended" if ended else "active",
                created_at=began,
                signed_in_at=began,
                last_seen_at=last_seen or ended or began,
                ended_at=ended,
                ip=ip,
                user_agent=agent,
            )
        )
        db.session.commit()


def test_profiles_that_look_shared_with_their_evidence(app, client, admin, make_user):
    now = datetime.now(UTC).replace(microsecond=0)
    day = timedelta(days=1)
    hour = timedelta(hours=1)
    dana = make_user("dana@clinic.example", full_name="Front Desk")
    eve = make_user("eve@clinic.example")
    finn = make_user("finn@clinic.example")
    gus = make_user("gus@clinic.example")
    hal = make_user("hal@clinic.example")
    ida = make_user("ida@clinic.example", active=False)
    # Dana: three devices this week, one after the other.
    add_session(app, dana, WINDOWS, "10.0.0.1", now - 5 * day, now - 5 * day + hour)
    add_session(app, dana, IPHONE, "10.0.0.1", now - 4 * day, now - 4 * day + hour)
    add_session(app, dana, WINDOWS, "10.0.0.2", now - 3 * day, now - 3 * day + hour)
    add_session(app, dana, WINDOWS, "10.0.0.2", now - 2 * day, now - 2 * day + hour)
    # Eve: two devices this week; the third was eight days ago.
    add_session(app, eve, WINDOWS, "10.0.0.1", now - 2 * day, now - 2 * day + hour)
    add_session(app, eve, IPHONE, "10.0.0.9", now - day, now - day + hour)
    add_session(app, eve, MAC, "10.0.0.7", now - 8 * day, now - 8 * day + hour)
    # Finn: signed in now from two addresses at once.
    add_session(app, finn, WINDOWS, "10.0.0.3", now - 2 * hour, None, last_seen=now)
    add_session(app, finn, MAC, "198.51.100.4", now - hour, None, last_seen=now)
    # Gus: two browsers at once, at one desk (one address).
    add_session(app, gus, WINDOWS, "10.0.0.5", now - 2 * hour, None, last_seen=now)
    add_session(app, gus, MAC, "10.0.0.5", now - hour, None, last_seen=now)
    # Hal: two addresses, but signed out at one before signing in at the other; and a session
    # never signed out that idled out hours ago (30 minutes without a request ends it).
    add_session(app, hal, WINDOWS, "10.0.0.6", now - 3 * hour, now - 2 * hour)
    add_session(app, hal, MAC, "198.51.100.6", now - hour, now - hour + 10 * timedelta(minutes=1))
    add_session(app, hal, WINDOWS, "10.0.0.6", now - 6 * hour, None, last_seen=now - 5 * hour)
    # Ida: shared, but switched off already.
    for n, ip in enumerate(["10.0.1.1", "10.0.1.2", "10.0.1.3"]):
        add_session(app, ida, WINDOWS, ip, now - (n + 1) * day, now - (n + 1) * day + hour)

    with app.app_context():
        found = {p.user.id: p for p in shared_profiles.find(now)}
    assert set(found) == {dana, finn}
    assert [(d.label, d.ip, d.sign_ins) for d in found[dana].devices] == [
        ("Chrome on Windows", "10.0.0.1", 1),
        ("Safari on iOS", "10.0.0.1", 1),
        ("Chrome on Windows", "10.0.0.2", 2),
    ]
    assert found[dana].overlap_count == 0
    assert found[finn].devices == []  # only two devices: the overlap is the evidence
    [(first, second)] = found[finn].overlaps
    assert (first.ip, first.label, second.ip, second.label) == (
        "10.0.0.3",
        "Chrome on Windows",
        "198.51.100.4",
        "Firefox on macOS",
    )

    html = section(page_text(client), "shared-heading")
    assert html.index("Front Desk") < html.index("finn@clinic.example")  # most devices first
    text = words(html)
    assert "Signed in from 3 devices in 7 days:" in text
    assert "Safari on iOS 10.0.0.1" in text
    with app.app_context():
        began = localtime.when(now - 2 * hour)
        later = localtime.when(now - hour)
    assert (
        f"Chrome on Windows at 10.0.0.3, signed in {began}, still signed in when Firefox on "
        f"macOS at 198.51.100.4 signed in {later}"
    ) in text
    for name in ("eve@", "gus@", "hal@", "ida@"):
        assert name not in html


def test_links_to_the_users_list(app):
    """Until the users list is merged here, its URLs are written out in one helper."""
    with app.test_request_context():
        assert (
            users_list(role=3, status="not_enrolled") == "/admin/users?role=3&status=not_enrolled"
        )
        assert users_list(status="exempt", q="") == "/admin/users?status=exempt"
        assert users_list(q="ana lim") == "/admin/users?q=ana+lim"
        assert users_list() == "/admin/users"
