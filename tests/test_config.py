"""Start-up configuration (issue: foundation, item 2)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import create_app
from config import ConfigError, load_secret_key
from models import db
from models.factors import EMAIL, SMS
from services import crypto, policy
from tests.conftest import TEST_ENCRYPTION_KEY, TEST_HASH_KEY

SAFE_PRODUCTION = {
    "MFA_ENV": "production",
    "SECRET_KEY": "k" * 40,
    "MFA_BASE_URL": "https://mfa.clinic.example",
    "MFA_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
    "MFA_HASH_KEY": TEST_HASH_KEY,
    "MAIL_SERVER": "smtp.clinic.example",
}


@pytest.fixture
def production_env(monkeypatch):
    """The environment of a safe production start, and nothing else from the shell; each
    test then spoils one thing."""
    for name in list(os.environ):
        if name.startswith(("MFA_", "MAIL_")) or name in ("SECRET_KEY", "DATABASE_URL"):
            monkeypatch.delenv(name)
    for name, value in SAFE_PRODUCTION.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def start():
    return create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


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


def test_database_url_from_environment(production_env, tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    production_env.setenv("DATABASE_URL", url)
    app = create_app({})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == url


def test_default_database_is_sqlite_in_instance(production_env):
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


# --- production refuses unsafe defaults (issue 7, item 6) --------------------------------------


def test_safe_production_settings_start(production_env):
    """The baseline the tests below spoil: without it they could pass for any reason."""
    app = start()
    assert app.config["MFA_MAIL_TRANSPORT"] == "smtp"
    assert app.config["MFA_SMS_GATEWAY"] is None  # SMS is off until a gateway is chosen
    assert app.config["MFA_ALLOW_CONSOLE_DELIVERY_IN_PRODUCTION"] is False


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (
            {"MFA_MAIL_TRANSPORT": "console"},
            "MFA_MAIL_TRANSPORT=console prints every email, sign-in codes and password-reset "
            "links included, into the server log. In production send mail through SMTP "
            "(MFA_MAIL_TRANSPORT=smtp and MAIL_SERVER), or set "
            "MFA_ALLOW_CONSOLE_DELIVERY_IN_PRODUCTION=1 if the log really is where they "
            "should go.",
        ),
        (
            {"MFA_SMS_GATEWAY": "console"},
            "MFA_SMS_GATEWAY=console prints every text message, sign-in codes included, into "
            "the server log. In production set MFA_SMS_GATEWAY to webhook or twilio, leave it "
            "unset if the clinic does not use SMS, or set "
            "MFA_ALLOW_CONSOLE_DELIVERY_IN_PRODUCTION=1 if the log really is where they "
            "should go.",
        ),
        (
            {"MFA_ENCRYPTION_KEYS": None, "MFA_HASH_KEY": None},
            "Encryption keys are not configured. In production set MFA_ENCRYPTION_KEYS and "
            "MFA_HASH_KEY, or MFA_KEYS_FILE to a key file kept apart from the database: a key "
            "file generated into instance/ beside the database ends up in the same backups, "
            "and a backup holding both defeats the encryption. Make the keys with "
            "`python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'` (MFA_ENCRYPTION_KEYS) and "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` (MFA_HASH_KEY).",
        ),
        (
            {"MFA_HASH_KEY": None},
            "MFA_ENCRYPTION_KEYS and MFA_HASH_KEY go together: set both, or neither and "
            "MFA_KEYS_FILE.",
        ),
        (
            {"MFA_ENCRYPTION_KEYS": None, "MFA_KEYS_FILE": "/etc/clinic-mfa/keys.json"},
            "MFA_ENCRYPTION_KEYS and MFA_HASH_KEY go together: set both, or neither and "
            "MFA_KEYS_FILE.",
        ),
    ],
    ids=["console-mail", "console-sms", "no-keys", "no-hash-key", "hash-key-alone"],
)
def test_unsafe_production_default_stops_start_up(production_env, spoil, message):
    for name, value in spoil.items():
        if value is None:
            production_env.delenv(name)
        else:
            production_env.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        start()
    assert str(refused.value) == message


def test_console_delivery_in_production_only_when_allowed_by_name(production_env):
    production_env.setenv("MFA_MAIL_TRANSPORT", "console")
    production_env.setenv("MFA_SMS_GATEWAY", "console")
    production_env.setenv("MFA_ALLOW_CONSOLE_DELIVERY_IN_PRODUCTION", "1")
    app = start()
    assert (app.config["MFA_MAIL_TRANSPORT"], app.config["MFA_SMS_GATEWAY"]) == ("console",) * 2


def test_production_may_keep_keys_in_a_file_it_names(production_env, tmp_path):
    production_env.delenv("MFA_ENCRYPTION_KEYS")
    production_env.delenv("MFA_HASH_KEY")
    production_env.setenv("MFA_KEYS_FILE", str(tmp_path / "keys.json"))
    app = start()
    with app.app_context():
        assert crypto.keys_file() == tmp_path / "keys.json"


def test_production_without_a_mail_server_warns_at_start(production_env, caplog):
    production_env.delenv("MAIL_SERVER")
    with caplog.at_level(logging.WARNING, logger="app"):
        app = start()
    assert app.config["MAIL_SERVER"] is None
    assert [r.getMessage() for r in caplog.records if r.name == "app"] == [
        "No mail server is configured: set MAIL_SERVER (with MAIL_PORT, MAIL_USE_TLS, "
        "MAIL_USERNAME and MAIL_PASSWORD as the server needs). Password resets and security "
        "notices cannot be sent."
    ]


def test_development_defaults_still_start(production_env):
    """`make run`: codes on the console, keys generated into instance/ on first use."""
    production_env.setenv("MFA_ENV", "development")
    for name in ("MFA_BASE_URL", "MFA_ENCRYPTION_KEYS", "MFA_HASH_KEY", "MAIL_SERVER"):
        production_env.delenv(name)
    app = start()
    assert (app.config["MFA_MAIL_TRANSPORT"], app.config["MFA_SMS_GATEWAY"]) == ("console",) * 2
    with app.app_context():
        assert crypto.keys_file() == Path(app.instance_path) / "mfa_keys.json"
        # Console delivery counts as delivered, so `policy set --methods totp,email,sms` works.
        assert (policy.delivery_problem(EMAIL), policy.delivery_problem(SMS)) == (None, None)
