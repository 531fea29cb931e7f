"""Fixtures in the flaskr shape: app, client, runner, auth; every database test runs twice,
on SQLite and on the running PostgreSQL, through the real Alembic migrations.

PostgreSQL or Chromium missing: skipped with a printed reason, except under CI=true where a
missing one fails the run.
"""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from app import create_app
from models import DEFAULT_ROLES, Base, Role, User, db
from services.passwords import hash_password

IN_CI = os.environ.get("CI") == "true"
PG_ADMIN_URL = os.environ.get(
    "MFA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PASSWORD = "correct horse battery staple"
SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"


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


def base_config(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": SECRET_KEY,
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": False},
        "MFA_CLINIC_NAME": "Harbour Clinic",
        **extra,
    }


@pytest.fixture(scope="session")
def password_hash() -> str:
    """argon2id costs ~40 ms, so tests share one hash of PASSWORD."""
    return hash_password(PASSWORD)


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
    """Empty every table and put back the seeded roles: faster than re-migrating."""
    tables = list(reversed(Base.metadata.sorted_tables))
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


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
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
        match = CSRF_RE.search(page.get_data(as_text=True))
        assert match, f"no CSRF token on {path} ({page.status_code})"
        return match.group(1)

    def login(self, email: str = "nurse@clinic.example", password: str = PASSWORD, **extra: Any):
        data = {"csrf_token": self.csrf_token(), "email": email, "password": password, **extra}
        return self.client.post("/sign-in", data=data)

    def logout(self):
        return self.client.post("/sign-out", data={"csrf_token": self.csrf_token("/")})


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)


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
