"""Start-up configuration (issue: foundation, item 2)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import create_app
from config import ConfigError, load_secret_key
from models import db


def test_development_secret_key_is_generated_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = load_secret_key(str(tmp_path), production=False)
    second = load_secret_key(str(tmp_path), production=False)
    assert first == second and len(first) == 64
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600


def test_production_without_secret_key_stops_start_up(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        load_secret_key(str(tmp_path), production=True)
    assert not (tmp_path / "secret_key").exists()


def test_production_refuses_a_short_secret_key(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "short")
    with pytest.raises(ConfigError, match="at least 32"):
        load_secret_key(str(tmp_path), production=True)


def test_create_app_in_production_without_key_fails(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("MFA_ENV", "production")
    with pytest.raises(ConfigError):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_production_without_base_url_stops_start_up(monkeypatch):
    """Links in emails must not come from the request's Host, so production needs the
    public address (SEC-4)."""
    monkeypatch.setenv("MFA_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.delenv("MFA_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match=r"MFA_BASE_URL is not set\. Set it to the address"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


@pytest.mark.parametrize(
    "value",
    [
        "mfa.clinic.example",
        "ftp://mfa.clinic.example",
        "https://",
        "https://mfa.clinic.example/mfa",
        "https://mfa.clinic.example/?next=x",
        "https://user:pass@mfa.clinic.example",
        "https://mfa.clinic.example:99999",
        "https://" + "a" * 64 + ".example",
        "https://mfa..example",
        "https://-mfa.example",
        "http://[::1]:5000",
    ],
)
def test_production_refuses_a_base_url_that_is_not_scheme_and_host(monkeypatch, value):
    monkeypatch.setenv("MFA_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.setenv("MFA_BASE_URL", value)
    with pytest.raises(ConfigError, match="MFA_BASE_URL"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_extra_trusted_hosts_must_be_host_names(monkeypatch):
    monkeypatch.setenv("MFA_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.setenv("MFA_BASE_URL", "https://mfa.clinic.example")
    for bad in ("clinic-lan:8000", "https://clinic-lan", "a" * 64):
        monkeypatch.setenv("MFA_TRUSTED_HOSTS", bad)
        with pytest.raises(ConfigError, match="MFA_TRUSTED_HOSTS"):
            create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_forwarded_host_needs_a_trusted_proxy(monkeypatch):
    monkeypatch.setenv("MFA_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.setenv("MFA_BASE_URL", "https://mfa.clinic.example")
    monkeypatch.setenv("MFA_TRUST_FORWARDED_HOST", "1")
    monkeypatch.delenv("MFA_TRUSTED_PROXIES", raising=False)
    with pytest.raises(ConfigError, match="MFA_TRUSTED_PROXIES"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_development_base_url_and_hosts_default_to_loopback(monkeypatch):
    monkeypatch.setenv("MFA_ENV", "development")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.delenv("MFA_BASE_URL", raising=False)
    monkeypatch.delenv("MFA_TRUSTED_HOSTS", raising=False)
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["MFA_BASE_URL"] == "http://127.0.0.1:5000"
    assert app.config["TRUSTED_HOSTS"] == ["127.0.0.1", "localhost"]


def test_database_url_from_environment(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.setenv("MFA_BASE_URL", "https://mfa.clinic.example")
    app = create_app({})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == url


def test_default_database_is_sqlite_in_instance(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.setenv("MFA_BASE_URL", "https://mfa.clinic.example")
    app = create_app({})
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    assert uri == f"sqlite:///{Path(app.instance_path) / 'clinic-mfa.sqlite3'}"


def test_database_connection_settings(app):
    """SQLite: WAL, foreign keys, busy timeout. PostgreSQL: through psycopg 3."""
    with app.app_context(), db.engine.connect() as conn:
        if db.engine.dialect.name == "sqlite":
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(sa.text("PRAGMA busy_timeout")).scalar() == 10000
        else:
            assert db.engine.dialect.driver == "psycopg"
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1


def test_migrations_match_the_models(app):
    """`flask db check`: a model change without its migration fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with app.app_context(), db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []
