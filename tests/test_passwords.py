"""Password hashing (AUTH-1): argon2id at OWASP's parameters unless MFA_PASSWORD_HASH_PARAMS
says otherwise. The rest of the suite runs at the cheapest parameters; these tests run at the
production ones."""

from __future__ import annotations

import argon2
import pytest
import sqlalchemy as sa

from app import create_app
from config import ConfigError
from models import User, db
from services import passwords
from tests.conftest import PASSWORD, AuthActions, base_config, make_app

OWASP_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"


@pytest.fixture
def owasp_app(database_url, app):
    """The app as production runs it: no MFA_PASSWORD_HASH_PARAMS, so OWASP's parameters."""
    production = make_app(database_url, MFA_PASSWORD_HASH_PARAMS=None)
    yield production
    with production.app_context():
        db.engine.dispose()


def _params(password_hash: str) -> tuple[int, int, int]:
    found = argon2.extract_parameters(password_hash)
    return found.time_cost, found.memory_cost, found.parallelism


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (None, (2, 19456, 1)),
        ("", (2, 19456, 1)),
        ("t=1, m=8, p=1", (1, 8, 1)),
        ({"time_cost": 3, "memory_cost": 12288, "parallelism": 1}, (3, 12288, 1)),
        ({"t": 1, "m": 47104, "p": 1}, (1, 47104, 1)),
    ],
    ids=["unset", "empty", "string", "mapping", "short-names"],
)
def test_hashes_and_the_dummy_hash_use_the_configured_parameters(setting, expected):
    """The unknown-email path must cost what a wrong password costs: the dummy hash it
    verifies against is made with the very parameters real hashes are."""
    app = create_app(base_config("sqlite://", MFA_PASSWORD_HASH_PARAMS=setting))
    with app.app_context():
        real = passwords.hash_password(PASSWORD)
        dummy = passwords.hasher().dummy_hash()
    assert _params(real) == _params(dummy) == expected


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("t=2,m=19456", "give all three of t, m and p"),
        ("t=2,m=19 MiB,p=1", "m must be a whole number, got '19 MiB'"),
        ("2,19456,1", "write it as t=2,m=19456,p=1"),
        ({"t": 2, "m": 19456, "p": 1, "salt": 8}, "unknown parameter 'salt'; use t, m and p"),
        ("t=0,m=19456,p=1", "argon2 needs t >= 1, p >= 1 and m >= 8 * p"),
        ("t=1,m=15,p=2", "argon2 needs t >= 1, p >= 1 and m >= 8 * p"),
    ],
)
def test_unusable_parameters_stop_start_up(setting, message):
    with pytest.raises(ConfigError) as refused:
        create_app(base_config("sqlite://", MFA_PASSWORD_HASH_PARAMS=setting))
    assert str(refused.value) == (
        f"MFA_PASSWORD_HASH_PARAMS: {message} (OWASP's are t=2,m=19456,p=1)."
    )


def test_parameters_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MFA_PASSWORD_HASH_PARAMS", "t=3,m=12288,p=1")
    config = base_config("sqlite://")
    del config["MFA_PASSWORD_HASH_PARAMS"]
    app = create_app(config)
    assert app.extensions["mfa_password_hasher"].params == passwords.HashParams(3, 12288, 1)


def test_unknown_email_spends_a_real_hash(owasp_app, monkeypatch):
    """The unknown-email path runs argon2 verify at production cost, as a wrong password
    does."""
    hasher = owasp_app.extensions["mfa_password_hasher"]
    calls: list[str] = []
    real = hasher.argon2

    class Spy:
        def __getattr__(self, name: str):
            return getattr(real, name)

        def verify(self, stored: str, password: str) -> bool:
            calls.append(stored)
            return real.verify(stored, password)

    monkeypatch.setattr(hasher, "argon2", Spy())
    response = AuthActions(owasp_app.test_client()).login(email="nobody@clinic.example")
    assert response.status_code == 422
    assert len(calls) == 1 and calls[0].startswith(OWASP_PREFIX)


def test_password_rehashed_when_parameters_change(owasp_app, make_user, password_hash):
    """A hash made at other parameters (here the tests' cheap ones) is replaced by one at
    the configured parameters when its owner next signs in."""
    assert not password_hash.startswith(OWASP_PREFIX)
    make_user(email="old@clinic.example")
    response = AuthActions(owasp_app.test_client()).login(email="old@clinic.example")
    assert response.status_code == 303
    with owasp_app.app_context():
        stored = db.session.scalar(sa.select(User.password_hash))
        assert stored.startswith(OWASP_PREFIX)
        assert passwords.verify_password(stored, PASSWORD)


def test_outside_an_app_hashing_uses_owasps_parameters():
    """The bench times argon2 on its own, outside any app: at production cost."""
    assert passwords.hash_password(PASSWORD).startswith(OWASP_PREFIX)
