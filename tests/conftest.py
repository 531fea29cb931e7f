"""Fixtures in the flaskr shape: app, client, runner, auth; every database test runs twice,
on SQLite and on the running PostgreSQL, through the real Alembic migrations.

PostgreSQL or Chromium missing: skipped with a printed reason, except under CI=true where a
missing one fails the run.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from app import create_app
from models import DEFAULT_ROLES, AuditPurgePermit, Base, Role, User, db
from services.passwords import Hasher, parse_params

IN_CI = os.environ.get("CI") == "true"
PG_ADMIN_URL = os.environ.get(
    "MFA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PASSWORD = "correct horse battery staple"
SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"
BASE_URL = "http://localhost"


def missing(reason: str) -> None:
    """Skip locally, fail in CI: CI must run every part of the suite."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app(base_config(url))
    with app.app_context():
        upgrade()
        db.engine.dispose()


# Fixed test keys: an encryption key and a hash key, as production would set them.
TEST_ENCRYPTION_KEY = "Pm2cF1g0f9mZ0a6yW3mJv2m8QwH0rTzq4kqjvYw7s2Y="
TEST_HASH_KEY = "dGVzdC1oYXNoLWtleS10ZXN0LWhhc2gta2V5LTAxMjM0"
SMTP_PORT: int | None = None  # set by the smtp_server fixture before any app is made
SMS_URL: str | None = None  # set by the sms_server fixture
SMS_SECRET = "test-webhook-secret"
# argon2id at its minimum cost: hashing is not what most tests test, and at OWASP's cost it
# took a good share of the suite's time. tests/test_passwords.py tests the real parameters.
TEST_PASSWORD_HASH_PARAMS = "t=1,m=8,p=1"


def base_config(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": SECRET_KEY,
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": False},
        "MFA_CLINIC_NAME": "Harbour Clinic",
        # The test client sends Host "localhost"; links in emails come from here.
        "MFA_BASE_URL": BASE_URL,
        "MFA_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
        "MFA_HASH_KEY": TEST_HASH_KEY,
        "MFA_MAIL_TRANSPORT": "smtp",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": SMTP_PORT or 1,
        "MAIL_TIMEOUT": 3,
        "MFA_SMS_GATEWAY": "webhook",
        "MFA_SMS_WEBHOOK_URL": SMS_URL or "http://127.0.0.1:1/",
        "MFA_SMS_WEBHOOK_SECRET": SMS_SECRET,
        "MFA_SMS_TIMEOUT": 2,
        "MFA_PASSWORD_HASH_PARAMS": TEST_PASSWORD_HASH_PARAMS,
        **extra,
    }


@pytest.fixture(scope="session")
def password_hash() -> str:
    """One hash of PASSWORD for every test, at the tests' argon2 parameters."""
    return Hasher(parse_params(TEST_PASSWORD_HASH_PARAMS)).argon2.hash(PASSWORD)


def _postgres_database() -> Iterator[str]:
    name = f"clinic_mfa_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        missing(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc.orig}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        migrate(url)
        yield url
        return
    gen = _postgres_database()
    url = next(gen)
    migrate(url)
    yield url
    gen.close()


def reset_database() -> None:
    """Empty every table and put back the seeded roles: faster than re-migrating.

    The audit log refuses DELETE (SQLite) and TRUNCATE (PostgreSQL) like any other caller's,
    so the reset goes through the same door as `flask audit purge`: a purge permit for
    everything, held only inside this transaction. The triggers stay as they are."""
    from services.audit import EVERYTHING, purge_permit

    permits = AuditPurgePermit.__table__
    tables = [t for t in reversed(Base.metadata.sorted_tables) if t is not permits]
    with purge_permit(EVERYTHING):
        if db.engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            db.session.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                db.session.execute(table.delete())
    db.session.add_all(Role(name=name) for name in DEFAULT_ROLES)
    db.session.commit()


def make_app(database_url: str, **extra: Any) -> Flask:
    return create_app(base_config(database_url, **extra))


class Mailbox:
    """What the loopback SMTP server received, parsed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    def clear(self) -> None:
        self.messages.clear()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in m["To"]]

    @staticmethod
    def text(message: EmailMessage) -> str:
        part = message.get_body(preferencelist=("plain",))
        return part.get_content() if part else ""


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server, session, envelope):
        self.box.messages.append(
            message_from_bytes(envelope.content, _class=EmailMessage, policy=default_policy)
        )
        return "250 OK"


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[Mailbox]:
    """A real SMTP server on loopback (aiosmtpd) that every test app sends to."""
    global SMTP_PORT
    from aiosmtpd.controller import Controller

    box = Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(_Handler(box), hostname="127.0.0.1", port=port)
    controller.start()
    SMTP_PORT = port
    yield box
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: Mailbox) -> Mailbox:
    smtp_server.clear()
    return smtp_server


class SmsInbox:
    """What the loopback SMS webhook received: dicts with "to" and "body"."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.status = 200  # what the gateway answers; tests set 500 to see failures
        self.delay = 0.0  # seconds to hang before answering

    def to(self, number: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["to"] == number]


@pytest.fixture(scope="session")
def sms_server() -> Iterator[SmsInbox]:
    """A real HTTP server on loopback standing in for the SMS provider's webhook."""
    global SMS_URL
    import json
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    inbox = SmsInbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, delay = inbox.status, inbox.delay  # as set when the request arrived
            if delay:
                time.sleep(delay)
                return  # the client gave up long ago; nothing was delivered
            if status == 200:
                message = json.loads(body)
                message["signature"] = self.headers.get("X-Clinic-MFA-Signature")
                inbox.messages.append(message)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    SMS_URL = f"http://127.0.0.1:{server.server_port}/sms"
    yield inbox
    server.shutdown()


@pytest.fixture
def sms_inbox(sms_server: SmsInbox) -> Iterator[SmsInbox]:
    sms_server.messages.clear()
    sms_server.status, sms_server.delay = 200, 0.0
    yield sms_server
    sms_server.status, sms_server.delay = 200, 0.0


@pytest.fixture
def app(database_url: str, smtp_server: Mailbox, sms_server: SmsInbox) -> Iterator[Flask]:
    app = make_app(database_url)
    with app.app_context():
        reset_database()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def make_user(app: Flask, password_hash: str):
    """make_user(email, role="Practitioner", **fields) -> user id, with PASSWORD."""

    def make(email: str = "nurse@clinic.example", role: str = "Practitioner", **fields: Any) -> int:
        with app.app_context():
            role_row = db.session.scalar(sa.select(Role).where(Role.name == role))
            user = User(email=email, password_hash=password_hash, role=role_row, **fields)
            db.session.add(user)
            db.session.commit()
            return user.id

    return make


CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


class AuthActions:
    """Drives sign-in the way a browser does: fetch the page, post its CSRF token."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def csrf_token(self, path: str = "/sign-in") -> str:
        page = self.client.get(path)
        if page.status_code in (302, 303):  # sent elsewhere: any page's token will do
            page = self.client.get(page.headers["Location"])
        match = CSRF_RE.search(page.get_data(as_text=True))
        assert match, f"no CSRF token on {path} ({page.status_code})"
        return match.group(1)

    def login(self, email: str = "nurse@clinic.example", password: str = PASSWORD, **extra: Any):
        data = {"csrf_token": self.csrf_token(), "email": email, "password": password, **extra}
        return self.client.post("/sign-in", data=data)

    def logout(self):
        return self.client.post("/sign-out", data={"csrf_token": self.csrf_token("/")})

    def verify_totp(self, code: str, **extra: Any):
        token = self.csrf_token("/mfa/challenge")
        return self.client.post("/mfa/challenge", data={"csrf_token": token, "code": code, **extra})

    def post(
        self, path: str, data: dict[str, Any] | None = None, page: str | None = None, **kw: Any
    ):
        """POST with the CSRF token read from ``page`` (default: the same path)."""
        token = self.csrf_token(page or path)
        return self.client.post(path, data={"csrf_token": token, **(data or {})}, **kw)


def release_together(posts: list) -> list[int]:
    """Run every ``post()`` at once from its own thread; their status codes."""
    barrier = threading.Barrier(len(posts))
    statuses: list[int] = []

    def run(post) -> None:
        barrier.wait(timeout=20)
        statuses.append(post().status_code)

    threads = [threading.Thread(target=run, args=(p,)) for p in posts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(statuses) == len(posts), "a request did not finish"
    return statuses


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)


@pytest.fixture
def set_policy(app: Flask):
    """set_policy(mode="required", remember_days=30, ...) as `flask policy set` would."""
    from services import policy

    def set_(**values: Any) -> None:
        with app.app_context():
            policy.update(**values)
            db.session.commit()

    return set_


def app_factor(user_id: int, secret: str):
    """An authenticator app already set up with ``secret``, the default; add it to the
    session inside an app context (it is encrypted with that app's key)."""
    from models import MfaFactor
    from services import crypto

    return MfaFactor(
        user_id=user_id, kind="totp", is_default=True, secret_encrypted=crypto.encrypt(secret)
    )


@pytest.fixture
def enrol_totp(app: Flask):
    """enrol_totp(user_id) -> base32 secret: an authenticator app already set up."""
    import pyotp

    from services import recovery

    def enrol(user_id: int, *, with_recovery: bool = False) -> tuple[str, list[str]]:
        secret = pyotp.random_base32(32)
        with app.app_context():
            db.session.add(app_factor(user_id, secret))
            codes = recovery.generate(user_id) if with_recovery else []
            db.session.commit()
        return secret, codes

    return enrol


ADMIN = "boss@clinic.example"


@pytest.fixture
def admin(auth: AuthActions, make_user, enrol_totp) -> AuthActions:
    """Bo Boss, an Administrator signed in just now with an authenticator app (so fresh for
    admin changes); ``admin.user_id`` is theirs. Modules may define their own."""
    import pyotp

    admin_id = make_user(ADMIN, role="Administrator", full_name="Bo Boss")
    secret, _ = enrol_totp(admin_id)
    auth.login(ADMIN)
    assert auth.verify_totp(pyotp.TOTP(secret).now()).status_code == 303
    auth.user_id = admin_id  # type: ignore[attr-defined]
    return auth


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print how many tests ran on each database, so CI output shows both really ran."""
    counts: Counter[str] = Counter()
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if report.when != "call" and outcome != "skipped" and outcome != "error":
                continue
            nodeid = report.nodeid
            backend = (
                "postgresql" if "postgresql" in nodeid else "sqlite" if "sqlite" in nodeid else None
            )
            if "tests/browser/" in nodeid:
                backend = "chromium"
            if backend:
                counts[f"{backend} {outcome}"] += 1
    if counts:
        terminalreporter.write_sep("-", "tests per database / browser")
        for key in sorted(counts):
            terminalreporter.write_line(f"{key}: {counts[key]}")
