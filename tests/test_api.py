"""The API (ADM-10): GET /api/v1/users with an API user's bearer token. What it returns and how
it pages; every way a token is refused (RFC 6750's 401 and header); cookies never open it and
tokens never open a page; JSON, no-store and no cookie on every answer; the token's last use
written at most once a minute; and its description, against which real answers validate."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse

from config import ConfigError
from models import ApiToken, MfaFactor, User, UserSession, db
from models.sessions import ACTIVE
from services import api_access, policy
from tests.conftest import make_app

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
ADMIN = "boss@clinic.example"
NURSE = "nurse@clinic.example"
REPORT = "monthly-report@api.invalid"
BIGGEST = "after must be a whole number from 0 to 4611686018427387904."
REALM = 'Bearer realm="clinic-mfa"'
REDIS_URL = os.environ.get("MFA_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def new_token(app: Flask, name: str = "Monthly report", *, days: int = 90, **user: str) -> str:
    """An API user called ``name`` (made if missing) and a new token of it; the secret."""
    with app.app_context():
        api_user = api_access.by_name(name) or api_access.create_user(name, **user)
        secret = api_access.issue(api_user, "Power BI", days).secret
        db.session.commit()
    return secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def clinic(app, make_user, enrol_totp):
    """An admin with an app, a nurse with nothing, an exempt receptionist, a deactivated
    practitioner with an emailed code, and a nurse who signed in once."""
    admin = make_user(ADMIN, role="Administrator", full_name="Alex Admin")
    enrol_totp(admin)
    make_user("nurse@clinic.example", full_name="Nat Nurse")
    make_user("desk@clinic.example", role="Reception", mfa_override="exempt")
    gone = make_user("gone@clinic.example", active=False)
    signed = make_user("seen@clinic.example", full_name="Sam Seen")
    with app.app_context():
        policy.update(methods="totp,email")
        db.session.add(MfaFactor(user_id=gone, kind="email", is_default=True, target="x@y.z"))
        db.session.add(UserSession(user_id=signed, state="ended", signed_in_at=T0, token_hash=None))
        db.session.commit()
    return app


def test_a_valid_token_reads_everyone_with_their_mfa_status(app, client, clinic):
    secret = new_token(app)
    response = client.get("/api/v1/users", headers=bearer(secret))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers
    body = response.get_json()
    assert body["next"] is None
    rows = [
        (
            u["email"],
            u["name"],
            u["role"],
            u["kind"],
            u["active"],
            u["mfa"]["status"],
            u["mfa"]["methods"],
            u["last_sign_in"],
        )
        for u in body["users"]
    ]
    seen = "2026-11-23T09:00:00Z"
    assert rows == [
        (ADMIN, "Alex Admin", "Administrator", "staff", True, "enrolled", ["totp"], None),
        (NURSE, "Nat Nurse", "Practitioner", "staff", True, "not_enrolled", [], None),
        ("desk@clinic.example", "", "Reception", "staff", True, "exempt", [], None),
        ("gone@clinic.example", "", "Practitioner", "staff", False, "enrolled", ["email"], None),
        ("seen@clinic.example", "Sam Seen", "Practitioner", "staff", True, "not_enrolled", [], seen),  # noqa: E501
        (REPORT, "Monthly report", "Reporting", "api", True, "exempt", [], None),
    ]  # fmt: skip
    ids = [u["id"] for u in body["users"]]
    assert ids == sorted(ids)


def test_methods_the_policy_no_longer_allows_do_not_count(app, client, clinic):
    """The email-only person is not set up once email is switched off: the readiness rule."""
    secret = new_token(app)
    with app.app_context():
        policy.update(methods="totp")
        db.session.commit()
    users = client.get("/api/v1/users", headers=bearer(secret)).get_json()["users"]
    gone = next(u for u in users if u["email"] == "gone@clinic.example")
    assert gone["mfa"] == {"status": "not_enrolled", "methods": []}


def test_pages_follow_next_to_the_end_without_gaps_or_repeats(app, client, make_user):
    for n in range(7):
        make_user(f"p{n}@clinic.example")
    secret = new_token(app)  # the 8th user
    seen: list[int] = []
    url = "/api/v1/users?limit=3"
    pages = []
    for _ in range(5):  # bounded: 3 pages expected
        body = client.get(url, headers=bearer(secret)).get_json()
        pages.append(len(body["users"]))
        seen += [u["id"] for u in body["users"]]
        if body["next"] is None:
            break
        assert body["next"] == f"http://localhost/api/v1/users?after={seen[-1]}&limit=3"
        url = body["next"].removeprefix("http://localhost")
    assert pages == [3, 3, 2]
    with app.app_context():
        assert seen == list(db.session.scalars(sa.select(User.id).order_by(User.id)))
    # Someone added while paging appears on a later page; nobody is repeated.
    body = client.get(f"/api/v1/users?after={seen[2]}&limit=50", headers=bearer(secret))
    assert [u["id"] for u in body.get_json()["users"]] == seen[3:]


def test_the_next_link_comes_from_the_base_url_not_the_host_header(app, client, make_user):
    make_user("a@clinic.example")
    make_user("b@clinic.example")
    secret = new_token(app)
    response = client.get(
        "/api/v1/users?limit=1", headers={**bearer(secret), "X-Forwarded-Host": "evil.example"}
    )
    assert response.get_json()["next"].startswith("http://localhost/api/v1/users?after=")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be a whole number from 1 to 200."),
        ("limit=201", "limit must be a whole number from 1 to 200."),
        ("limit=ten", "limit must be a whole number from 1 to 200."),
        ("limit=%EF%BC%91", "limit must be a whole number from 1 to 200."),  # a full-width 1
        ("after=-1", BIGGEST),
        ("after=99999999999999999999999", BIGGEST),
    ],
)  # fmt: skip
def test_bad_parameters_are_a_400_saying_which(app, client, query, message):
    secret = new_token(app)
    response = client.get(f"/api/v1/users?{query}", headers=bearer(secret))
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_request", "message": message}


def well_shaped_stranger() -> str:
    return "cmfa_" + base64.urlsafe_b64encode(b"\x01" * 32).decode().rstrip("=")


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        ("Bearer cmfa_short", "That is not an API token: cmfa_ and 43 more characters."),
        ("Bearer " + "x" * 48, "That is not an API token: cmfa_ and 43 more characters."),
        ("Bearer", "That is not an API token: cmfa_ and 43 more characters."),
        ("Bearer " + well_shaped_stranger(), "The API token is not valid."),
    ],
)
def test_malformed_and_wrong_tokens_get_401_invalid_token(app, client, authorization, message):
    new_token(app)
    response = client.get("/api/v1/users", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.get_json() == {"error": "invalid_token", "message": message}
    assert response.headers["WWW-Authenticate"] == (
        f'{REALM}, error="invalid_token", error_description="{message}"'
    )


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic dXNlcjpwYXNz"}])
def test_no_bearer_token_gets_401_naming_no_error(app, client, headers):
    """RFC 6750 3.1: a request without credentials gets the challenge and no error code."""
    response = client.get("/api/v1/users", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == REALM
    assert response.get_json() == {
        "error": "unauthorized",
        "message": "Send an API token: Authorization: Bearer cmfa_...",
    }


def test_an_expired_token_gets_401(app, client):
    with time_machine.travel(T0, tick=False) as clock:
        secret = new_token(app, days=1)
        assert client.get("/api/v1/users", headers=bearer(secret)).status_code == 200
        clock.shift(timedelta(days=1) - timedelta(seconds=1))
        assert client.get("/api/v1/users", headers=bearer(secret)).status_code == 200
        clock.shift(timedelta(seconds=1))
        response = client.get("/api/v1/users", headers=bearer(secret))
    assert response.status_code == 401
    assert response.get_json() == {
        "error": "invalid_token",
        "message": "The API token has expired.",
    }
    assert response.headers["WWW-Authenticate"].startswith(f'{REALM}, error="invalid_token"')


def test_a_revoked_token_gets_401_and_others_still_work(app, client):
    kept, revoked = new_token(app), new_token(app)
    with app.app_context():
        token = db.session.scalar(
            sa.select(ApiToken).where(ApiToken.token_hash == api_access.token_hash(revoked))
        )
        assert api_access.revoke(token)
        db.session.commit()
    response = client.get("/api/v1/users", headers=bearer(revoked))
    assert response.status_code == 401
    assert response.get_json()["message"] == "The API token has been revoked."
    assert response.headers["WWW-Authenticate"].startswith(f'{REALM}, error="invalid_token"')
    assert client.get("/api/v1/users", headers=bearer(kept)).status_code == 200


def test_a_switched_off_api_user_opens_nothing(app, client):
    secret = new_token(app)
    with app.app_context():
        api_access.by_name("Monthly report").active = False
        db.session.commit()
    response = client.get("/api/v1/users", headers=bearer(secret))
    assert response.status_code == 401
    assert response.get_json()["message"] == "The API user of this token is switched off."


def test_a_signed_in_browser_session_gets_401_and_no_cookie(app, client, auth, make_user):
    nurse = make_user()
    auth.login()
    assert client.get("/").status_code == 200  # signed in (MFA off)
    response = client.get("/api/v1/users")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == REALM
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")
    with app.app_context():  # the session row was not even looked at, let alone touched
        row = db.session.scalar(sa.select(UserSession).where(UserSession.user_id == nurse))
        assert row.state == ACTIVE


def test_a_token_on_a_web_page_opens_nothing(app, client, make_user, enrol_totp):
    """A bearer header on a page is ignored: the request is anonymous, even for the admin area
    (404) and even when the token's user has the page's role."""
    secret = new_token(app, role="Practitioner")
    for path in ("/", "/admin/api", "/admin/security", "/mfa/setup"):
        response = client.get(path, headers=bearer(secret))
        if path.startswith("/admin"):
            assert response.status_code == 404, path
        else:
            assert response.status_code in (302, 303), path
            assert response.headers["Location"].startswith("/sign-in"), path


def test_every_api_answer_is_json_no_store_and_cookie_free(app, client):
    secret = new_token(app)
    answers = {
        "ok": client.get("/api/v1/users", headers=bearer(secret)),
        "401": client.get("/api/v1/users"),
        "404": client.get("/api/v1/nothing-here", headers=bearer(secret)),
        "405": client.post("/api/v1/users", headers=bearer(secret)),
        "415": client.post("/api/v1/users", json={"a": 1}),
        "description": client.get("/api/v1/openapi.json"),
    }
    expected = {"ok": 200, "401": 401, "404": 404, "405": 405, "415": 415, "description": 200}
    for name, response in answers.items():
        assert response.status_code == expected[name], name
        assert response.mimetype == "application/json", name
        assert response.headers["Cache-Control"] == "no-store", name
        assert "Set-Cookie" not in response.headers, name
    assert answers["404"].get_json() == {
        "error": "not_found",
        "message": "There is nothing at this address. The API's description is at "
        "/api/v1/openapi.json.",
    }
    assert answers["405"].get_json()["error"] == "method_not_allowed"


def test_a_session_cookie_is_never_written_for_the_api(app, client, make_user):
    """Even a view that wanted to write the session could not: the API's session is a null
    one, and writing to it fails loudly instead of setting a cookie."""
    from flask import session

    with app.test_request_context("/api/v1/users", headers={"Cookie": "session=anything"}):
        assert app.session_interface.is_null_session(session)
        with pytest.raises(RuntimeError, match="API requests have no session"):
            session["sid"] = "x"
    with app.test_request_context("/"):
        assert not app.session_interface.is_null_session(session)


def test_last_use_is_written_at_most_once_a_minute(app, client):
    """Within the minute a request costs no write at all (not even a conditional UPDATE that
    matches nothing); after it, one."""
    writes: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_TOKENS"):
            writes.append(statement)

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        with time_machine.travel(T0, tick=False) as clock:
            secret = new_token(app)
            client.get("/api/v1/users", headers=bearer(secret))

            def last_use() -> tuple[datetime | None, str]:
                with app.app_context():
                    token = db.session.scalar(sa.select(ApiToken))
                    return token.last_used_at, token.last_used_ip

            assert last_use() == (T0, "127.0.0.1")
            assert len(writes) == 1
            other = {"REMOTE_ADDR": "10.0.0.9"}
            clock.shift(timedelta(seconds=59))
            client.get("/api/v1/users", headers=bearer(secret), environ_base=other)
            assert last_use() == (T0, "127.0.0.1")
            assert len(writes) == 1
            clock.shift(timedelta(seconds=1))
            client.get("/api/v1/users", headers=bearer(secret), environ_base=other)
            assert last_use() == (T0 + timedelta(seconds=60), "10.0.0.9")
            assert len(writes) == 2
    finally:
        with app.app_context():
            sa.event.remove(db.engine, "before_cursor_execute", count)


def test_the_secret_is_random_prefixed_and_never_stored(app, client, clinic):
    """256 bits after "cmfa_"; the database (every column of every table) holds only its
    SHA-256, and the audit log does not hold it either."""
    secrets_made = {new_token(app) for _ in range(5)}
    assert len(secrets_made) == 5
    for secret in secrets_made:
        assert secret.startswith("cmfa_") and len(secret) == 48
        assert len(base64.urlsafe_b64decode(secret[5:] + "=")) == 32
    with app.app_context():
        hashes = set(db.session.scalars(sa.select(ApiToken.token_hash)))
        assert hashes == {hashlib.sha256(s.encode()).digest() for s in secrets_made}
        dump = []
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(sa.select(table)):
                dump.append(repr(tuple(row)))
        everything = "\n".join(dump)
        for secret in secrets_made:
            assert secret not in everything
            assert secret[5:] not in everything
            assert secret[5:25] not in everything


def test_rate_limit_answers_429_with_retry_after_and_holds_per_token(database_url, client):
    app = make_app(database_url, MFA_API_RATE_LIMIT="3/minute")
    first, second = new_token(app), new_token(app)
    c = app.test_client()
    with time_machine.travel(T0 + timedelta(seconds=10), tick=False) as clock:
        assert [c.get("/api/v1/users", headers=bearer(first)).status_code for _ in range(3)] == [
            200,
            200,
            200,
        ]
        clock.shift(timedelta(seconds=10))
        over = c.get("/api/v1/users", headers=bearer(first))
        assert over.status_code == 429
        assert over.headers["Retry-After"] == "50"  # the window started 10 s ago
        assert over.get_json() == {
            "error": "rate_limited",
            "message": "At most 3 requests per minute for one token. Try again in 50 seconds.",
        }
        assert over.headers["Cache-Control"] == "no-store"
        # Another token has its own count.
        assert c.get("/api/v1/users", headers=bearer(second)).status_code == 200
        clock.shift(timedelta(seconds=49))
        assert c.get("/api/v1/users", headers=bearer(first)).status_code == 429
        clock.shift(timedelta(seconds=1))  # a new window
        assert c.get("/api/v1/users", headers=bearer(first)).status_code == 200
    with app.app_context():
        db.engine.dispose()


def _redis_or_missing(url: str) -> None:
    import redis

    from tests.conftest import missing

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        missing(f"Redis is not reachable at {url}: {exc}")


@pytest.mark.parametrize("storage", ["database", "redis"])
def test_the_limit_holds_across_two_workers(database_url, storage, client):
    """Two app instances (two workers, or two servers) share one count: of 12 requests with
    one token, half through each and half of those at the same moment, exactly the limit
    pass. A count kept in each process's memory would let 10 through."""
    import uuid

    from tests.conftest import release_together

    settings = {"MFA_API_RATE_LIMIT": "5/minute", "MFA_RATELIMIT_KEY_PREFIX": uuid.uuid4().hex}
    if storage == "redis":
        settings["MFA_RATELIMIT_STORAGE_URI"] = REDIS_URL
        _redis_or_missing(settings["MFA_RATELIMIT_STORAGE_URI"])
    one, two = make_app(database_url, **settings), make_app(database_url, **settings)
    secret = new_token(one)
    clients = [one.test_client(), two.test_client()]
    statuses = [
        clients[n % 2].get("/api/v1/users", headers=bearer(secret)).status_code for n in range(4)
    ]
    assert statuses == [200, 200, 200, 200]
    raced = release_together(
        [lambda c=clients[n % 2]: c.get("/api/v1/users", headers=bearer(secret)) for n in range(8)]
    )
    assert sorted(raced) == [200] + [429] * 7
    for app in (one, two):
        with app.app_context():
            db.engine.dispose()


def test_an_unreachable_limit_store_lets_requests_through_and_logs_it(database_url, client, caplog):
    app = make_app(database_url, MFA_RATELIMIT_STORAGE_URI="redis://127.0.0.1:1")
    secret = new_token(app)
    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/api/v1/users", headers=bearer(secret))
    assert response.status_code == 200
    assert "API rate limit storage failed; request let through" in caplog.text
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("MFA_API_RATE_LIMIT", "lots", "MFA_API_RATE_LIMIT: 'lots' is not a rate such as 60/"),
        ("MFA_RATELIMIT_STORAGE_URI", "nosuch://x", "MFA_RATELIMIT_STORAGE_URI: "),
    ],
)  # fmt: skip
def test_a_bad_limit_setting_stops_the_start(database_url, setting, value, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        make_app(database_url, **{setting: value})


# --- the OpenAPI description ------------------------------------------------------------


def _validate(openapi: OpenAPI, response) -> None:
    openapi.validate_response(
        WerkzeugOpenAPIRequest(response.request), WerkzeugOpenAPIResponse(response)
    )


def test_the_description_is_served_and_is_valid_openapi_3_1(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"] == "3.1.0"
    OpenAPI.from_dict(spec)  # raises if the document is not valid OpenAPI
    assert set(spec["paths"]) == {"/users"}


def test_real_answers_validate_against_the_description(database_url, client, clinic):
    """200 with data (and a next link), 400, 401 with and without a token, and 429, each
    checked by openapi-core against the served document: status, headers and body."""
    app = make_app(database_url, MFA_API_RATE_LIMIT="2/minute")
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    openapi = OpenAPI.from_dict(spec)
    secret = new_token(app)
    c = app.test_client()
    with app.app_context():
        admin_id = db.session.scalar(sa.select(User.id).where(User.email == ADMIN))
        db.session.add(UserSession(user_id=admin_id, state="ended", signed_in_at=T0))
        db.session.commit()
    page = c.get("/api/v1/users?limit=2", headers=bearer(secret))
    assert page.status_code == 200 and page.get_json()["next"] and page.get_json()["users"]
    assert any(u["last_sign_in"] for u in page.get_json()["users"])
    assert any(u["mfa"]["methods"] for u in page.get_json()["users"])
    answers = [
        page,
        c.get("/api/v1/users?limit=0", headers=bearer(secret)),
        c.get("/api/v1/users"),
        c.get("/api/v1/users", headers=bearer(well_shaped_stranger())),
        c.get("/api/v1/users", headers=bearer(secret)),  # the third with this token
    ]
    assert [a.status_code for a in answers] == [200, 400, 401, 401, 429]
    for answer in answers:
        _validate(openapi, answer)
    # And the check has teeth: a body the description does not allow is refused.
    broken = c.get("/api/v1/users?limit=0", headers=bearer(new_token(app, "Other")))
    broken.set_data(json.dumps({"error": "invalid_request"}))
    with pytest.raises(Exception, match=r"[Vv]alidat|[Ss]chema"):
        _validate(openapi, broken)
    with app.app_context():
        db.engine.dispose()


def test_a_page_costs_the_same_statements_whatever_its_size(app, client, make_user):
    """The token, the rate count, the policy, the users, their factors: a page of 200 costs
    what a page of 5 does (no query per person)."""
    from tests.clinic_seed import seed_clinic

    make_user("seed@clinic.example")
    seed_clinic(app, 220)
    secret = new_token(app)
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    client.get("/api/v1/users?limit=1", headers=bearer(secret))  # the last use is written
    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        sizes = {}
        for size in (5, 200):
            statements.clear()
            body = client.get(f"/api/v1/users?limit={size}", headers=bearer(secret)).get_json()
            assert len(body["users"]) == size
            sizes[size] = len(statements)
    finally:
        with app.app_context():
            sa.event.remove(db.engine, "before_cursor_execute", count)
    assert sizes[5] == sizes[200] <= 6, sizes
