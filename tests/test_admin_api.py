"""Admin → API access (ADM-10): API users and their tokens, shown apart from the staff.
Creating an API user, creating a token (its secret shown once, stored only as a hash) and
revoking one (after a confirmation step), each with a fresh sign-in, a CSRF token and an
audit record; as plain forms and as htmx partials."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from models import ApiToken, AuditEvent, Role, User, db
from services import api_access
from tests.conftest import PASSWORD, AuthActions

# Noon UTC: the same calendar day in any clinic time zone from UTC-11 to UTC+11.
T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
ADMIN = "boss@clinic.example"
SECRET = re.compile(r"cmfa_[A-Za-z0-9_-]{43}")
HTMX = {"HX-Request": "true"}
NEED_LETTERS = "Use letters or digits in the name, e.g. Monthly report."
TOO_LONG = "Field cannot be longer than 80 characters."


def every_change(api_id: int, token_id: int) -> list[tuple[str, dict[str, str]]]:
    """(path, form) of each POST on the page: new API user, new token, revoke."""
    return [
        ("/admin/api/users", {"name": "Second", "role": "Reporting"}),
        (
            f"/admin/api/users/{api_id}/tokens",
            {f"user-{api_id}-label": "x", f"user-{api_id}-days": "9"},
        ),
        (f"/admin/api/tokens/{token_id}/revoke", {"confirmed": "yes"}),
    ]


@pytest.fixture
def admin(app, make_user, enrol_totp):
    user_id = make_user(ADMIN, role="Administrator", full_name="Alex Admin")
    return user_id, enrol_totp(user_id)[0]


@pytest.fixture
def signed_in(auth, admin) -> AuthActions:
    auth.login(ADMIN)
    assert auth.verify_totp(pyotp.TOTP(admin[1]).now()).status_code == 303
    return auth


def an_api_user(app, name: str = "Monthly report") -> int:
    with app.app_context():
        user = api_access.create_user(name)
        db.session.commit()
        return user.id


def a_token(app, user_id: int, label: str = "Power BI", days: int = 90) -> tuple[int, str]:
    with app.app_context():
        issued = api_access.issue(db.session.get(User, user_id), label, days)
        db.session.commit()
        return issued.token.id, issued.secret


def post_token(auth: AuthActions, user_id: int, label: str, days: str, **kw):
    """The new-token form of API user ``user_id``, as the page posts it."""
    form = {f"user-{user_id}-label": label, f"user-{user_id}-days": days}
    return auth.post(f"/admin/api/users/{user_id}/tokens", form, page="/admin/api", **kw)


def audit_events(app, prefix: str = "admin.api") -> list[tuple[str, int | None, dict]]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.event.like(f"{prefix}%")).order_by(AuditEvent.id)
        )
        return [(row.event, row.actor_id, row.details) for row in rows]


def text(response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split())


def test_the_admin_nav_links_to_api_access(client, signed_in):
    page = client.get("/admin/security").get_data(as_text=True)
    assert '<a href="/admin/api">API access</a>' in page
    api = client.get("/admin/api")
    assert api.status_code == 200
    assert '<a href="/admin/api" aria-current="page">API access</a>' in api.get_data(as_text=True)
    assert "<h1>API access</h1>" in api.get_data(as_text=True)
    assert 'hx-history="false"' in api.get_data(as_text=True)
    assert "No API users yet." in text(api)


def test_api_users_are_listed_apart_from_staff(app, client, signed_in, make_user):
    make_user("nurse@clinic.example", full_name="Nat Nurse")
    an_api_user(app)
    page = text(client.get("/admin/api"))
    assert "Monthly report" in page
    assert "Role in reports: Reporting" in page
    assert "Nat Nurse" not in page and "Alex Admin" not in page.replace("Alex Admin Sign out", "")


def test_create_an_api_user_plain_form(app, client, signed_in, admin):
    response = signed_in.post(
        "/admin/api/users", {"name": "  Monthly   report ", "role": "Reporting"}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/api"
    page = text(client.get("/admin/api"))
    assert "API user Monthly report created. Now create a token for it." in page
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.kind == "api"))
        assert (user.full_name, user.email, user.role.name) == (
            "Monthly report",
            "monthly-report@api.invalid",
            "Reporting",
        )
        assert user.password_hash == api_access.UNUSABLE_PASSWORD
        assert db.session.scalar(sa.select(Role).where(Role.name == "Reporting")) is not None
    assert audit_events(app) == [
        ("admin.api_user_created", admin[0], {"name": "Monthly report", "role": "Reporting"})
    ]


def test_create_an_api_user_with_htmx_answers_the_list(app, client, signed_in):
    response = signed_in.post(
        "/admin/api/users", {"name": "Audit export", "role": "Location"}, page="/admin/api",
        headers=HTMX,
    )  # fmt: skip
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<h1>" not in body  # the partial under the page's heading
    assert "API user Audit export created." in body
    assert "Role in reports: Location" in text(response)


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"name": "", "role": "Reporting"}, "name", "Enter a name, e.g. Monthly report."),
        ({"name": "!!!", "role": "Reporting"}, "name", NEED_LETTERS),
        ({"name": "x" * 81, "role": "Reporting"}, "name", TOO_LONG),
        ({"name": "Report", "role": "Administrator"}, "role", "Not a valid choice."),
        ({"name": "Report", "role": "Nobody"}, "role", "Not a valid choice."),
    ],
)  # fmt: skip
def test_bad_api_user_input_is_a_422_at_its_field(app, signed_in, form, field, message):
    response = signed_in.post("/admin/api/users", form, page="/admin/api")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert f'<p class="error" id="{field}-error">{message}</p>' in body
    with app.app_context():
        assert db.session.scalar(sa.select(User).where(User.kind == "api")) is None
    assert audit_events(app) == []


def test_a_second_api_user_with_the_same_name_is_refused(app, signed_in):
    an_api_user(app, "Monthly Report")
    response = signed_in.post("/admin/api/users", {"name": "monthly-report", "role": "Reporting"})
    assert response.status_code == 422
    assert "An API user with that name already exists." in response.get_data(as_text=True)


def test_create_a_token_shows_the_secret_once_and_keeps_only_its_hash(app, client, auth, admin):
    api_id = an_api_user(app)
    with time_machine.travel(T0, tick=False):
        auth.login(ADMIN)
        auth.verify_totp(pyotp.TOTP(admin[1]).at(T0))
        response = post_token(auth, api_id, "Power BI", "90")
        # Never again: not on the page afterwards.
        again = client.get("/admin/api")
    assert response.status_code == 200  # not a redirect: that would have to carry the secret
    body = response.get_data(as_text=True)
    secrets_shown = SECRET.findall(body)
    assert len(secrets_shown) == 1
    secret = secrets_shown[0]
    assert "Copy the new token now" in body
    assert "works until 21 February 2027" in text(response)
    assert response.headers["Cache-Control"] == "no-store"
    with app.app_context():
        token = db.session.scalar(sa.select(ApiToken))
        assert token.token_hash == hashlib.sha256(secret.encode()).digest()
        assert token.expires_at == T0 + timedelta(days=90)
        assert (token.label, token.created_by_id, token.user_id) == ("Power BI", admin[0], api_id)
    assert again.status_code == 200
    assert SECRET.search(again.get_data(as_text=True)) is None
    assert "Power BI" in text(again) and "never used" in text(again)
    assert audit_events(app) == [
        ("admin.api_user_created", None, {"name": "Monthly report", "role": "Reporting"}),
        (
            "admin.api_token_created",
            admin[0],
            {"token_id": token.id, "label": "Power BI", "expires_at": "2027-02-21T12:00:00+00:00"},
        ),
    ]
    # And it opens the API (until 21 February 2027).
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/users", headers=bearer).status_code == 200


def test_a_token_with_htmx_shows_the_secret_in_the_partial(app, signed_in):
    api_id = an_api_user(app)
    response = post_token(signed_in, api_id, "Power BI", "30", headers=HTMX)
    assert response.status_code == 200
    assert "<h1>" not in response.get_data(as_text=True)
    assert len(SECRET.findall(response.get_data(as_text=True))) == 1


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ("366", "Choose from 1 to 365 days."),
        ("0", "Choose from 1 to 365 days."),
        ("", "Enter a number of days from 1 to 365."),
        ("ninety", "Not a valid integer value."),
    ],
)
def test_a_token_lasts_at_most_a_year(app, signed_in, days, message):
    api_id = an_api_user(app)
    response = post_token(signed_in, api_id, "Power BI", days)
    assert response.status_code == 422
    assert f'<p class="error" id="user-{api_id}-days-error">{message}</p>' in response.get_data(
        as_text=True
    )
    assert SECRET.search(response.get_data(as_text=True)) is None
    with app.app_context():
        assert db.session.scalar(sa.select(ApiToken)) is None


def test_a_token_needs_a_label(app, signed_in):
    api_id = an_api_user(app)
    response = post_token(signed_in, api_id, "   ", "90")
    assert response.status_code == 422
    assert "Enter a label, e.g. Power BI on the reporting server." in response.get_data(
        as_text=True
    )


def test_tokens_only_for_api_users(app, signed_in, make_user):
    nurse = make_user("nurse@clinic.example")
    response = post_token(signed_in, nurse, "x", "90")
    assert response.status_code == 404
    with app.app_context():
        assert db.session.scalar(sa.select(ApiToken)) is None


def test_revoke_asks_first_then_revokes(app, client, signed_in, admin):
    api_id = an_api_user(app)
    token_id, secret = a_token(app, api_id)
    url = f"/admin/api/tokens/{token_id}/revoke"
    ask = signed_in.post(url, {}, page="/admin/api")
    assert ask.status_code == 200
    assert '<h1 id="confirm-heading">Revoke this token?</h1>' in ask.get_data(as_text=True)
    assert "Anything still using it is refused from its next request." in text(ask)
    with app.app_context():
        assert db.session.get(ApiToken, token_id).revoked_at is None
    assert audit_events(app, "admin.api_token_revoked") == []

    done = signed_in.post(url, {"confirmed": "yes"}, page="/admin/api")
    assert done.status_code == 303
    assert done.headers["Location"] == "/admin/api"
    assert "Token “Power BI” of Monthly report revoked." in text(client.get("/admin/api"))
    with app.app_context():
        token = db.session.get(ApiToken, token_id)
        assert token.revoked_at is not None and token.revoked_by_id == admin[0]
    assert audit_events(app, "admin.api_token_revoked") == [
        ("admin.api_token_revoked", admin[0], {"token_id": token_id, "label": "Power BI"})
    ]
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/users", headers=bearer).status_code == 401

    again = signed_in.post(url, {"confirmed": "yes"}, page="/admin/api")
    assert again.status_code == 303
    assert "was already revoked." in text(client.get("/admin/api"))
    assert len(audit_events(app, "admin.api_token_revoked")) == 1


def test_revoke_with_htmx_confirms_in_place(app, signed_in):
    token_id, _ = a_token(app, an_api_user(app))
    url = f"/admin/api/tokens/{token_id}/revoke"
    ask = signed_in.post(url, {}, page="/admin/api", headers=HTMX)
    assert ask.status_code == 200
    assert '<h2 id="confirm-heading">Revoke this token?</h2>' in ask.get_data(as_text=True)
    assert 'name="confirmed" type="hidden" value="yes"' in ask.get_data(as_text=True)
    done = signed_in.post(url, {"confirmed": "yes"}, page="/admin/api", headers=HTMX)
    assert done.status_code == 200
    assert "Token “Power BI” of Monthly report revoked." in done.get_data(as_text=True)
    assert "Revoked" in text(done)


def test_revoking_an_unknown_token_is_404(signed_in):
    assert signed_in.post("/admin/api/tokens/999/revoke", {"confirmed": "yes"}).status_code == 404


def test_the_list_shows_status_expiry_and_last_use(app, client, signed_in):
    api_id = an_api_user(app)
    with time_machine.travel(T0 - timedelta(days=5), tick=False):
        a_token(app, api_id, "Old one", days=1)
    token_id, secret = a_token(app, api_id, "Live one")
    client.get("/api/v1/users", headers={"Authorization": f"Bearer {secret}"})
    page = text(client.get("/admin/api"))
    assert re.search(
        r"Live one Active Created \d+ \w+ \d{4} · expires \d+ \w+ \d{4} · last used", page
    )
    assert "from 127.0.0.1" in page
    assert re.search(
        r"Old one Expired Created 18 November 2026 · expired 19 November 2026 · never used", page
    )
    # Only the live token has a revoke button.
    assert page.count("Revoke token") == 1
    assert f"/admin/api/tokens/{token_id}/revoke" in client.get("/admin/api").get_data(as_text=True)


def test_a_stale_admin_re_authenticates_before_any_api_change(app, admin):
    auth = AuthActions(app.test_client())
    api_id = an_api_user(app)
    token_id, _ = a_token(app, api_id)
    with time_machine.travel(T0, tick=False) as clock:
        auth.login(ADMIN)
        auth.verify_totp(pyotp.TOTP(admin[1]).at(T0))
        token = auth.csrf_token("/admin/api")
        clock.shift(timedelta(minutes=10, seconds=1))
        for path, data in every_change(api_id, token_id):
            response = auth.client.post(
                path,
                data={"csrf_token": token, **data},
                headers={"Referer": "http://localhost/admin/api"},
            )
            assert response.status_code == 303, path
            assert response.headers["Location"] == "/reauthenticate?next=/admin/api"
        with app.app_context():
            assert (
                db.session.scalar(sa.select(sa.func.count(User.id)).where(User.kind == "api")) == 1
            )
            assert db.session.scalar(sa.select(sa.func.count(ApiToken.id))) == 1
            assert db.session.get(ApiToken, token_id).revoked_at is None
        assert len(audit_events(app)) == 2  # the two made above, by no admin
        again = auth.post("/reauthenticate", {"password": PASSWORD, "next": "/admin/api"})
        assert again.status_code == 303
        done = auth.post(
            f"/admin/api/tokens/{token_id}/revoke", {"confirmed": "yes"}, page="/admin/api"
        )
        assert done.status_code == 303
    with app.app_context():
        assert db.session.get(ApiToken, token_id).revoked_at is not None


def test_api_changes_without_a_csrf_token_are_refused(app, client, signed_in):
    api_id = an_api_user(app)
    token_id, _ = a_token(app, api_id)
    before = len(audit_events(app))
    for path, data in every_change(api_id, token_id):
        response = client.post(path, data=data)
        assert response.status_code == 400, path
        assert "This form had expired or came from somewhere else" in response.get_data(
            as_text=True
        )
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(User.id)).where(User.kind == "api")) == 1
        assert db.session.scalar(sa.select(sa.func.count(ApiToken.id))) == 1
        assert db.session.get(ApiToken, token_id).revoked_at is None
    assert len(audit_events(app)) == before


def test_non_admins_get_404_from_api_access(app, client, auth, make_user, enrol_totp):
    """Also walked by test_admin_access with every admin route; here by name."""
    nurse = make_user("nurse@clinic.example")
    secret = enrol_totp(nurse)[0]
    auth.login("nurse@clinic.example")
    auth.verify_totp(pyotp.TOTP(secret).now())
    api_id = an_api_user(app)
    token_id, _ = a_token(app, api_id)
    token = auth.csrf_token("/")
    for path in ("/admin/api", "/admin/api/users", f"/admin/api/users/{api_id}/tokens",
                 f"/admin/api/tokens/{token_id}/revoke"):  # fmt: skip
        method = "get" if path == "/admin/api" else "post"
        response = getattr(client, method)(path, data={"csrf_token": token, "confirmed": "yes"})
        assert response.status_code == 404, path
    with app.app_context():
        assert db.session.get(ApiToken, token_id).revoked_at is None
