"""No reset token in any log (SEC-4): the access log of a real gunicorn, run with the
production gunicorn.conf.py, and the redaction rule it applies."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
import sqlalchemy as sa

import tests.conftest as conftest
from bench.server import free_port, stop_gunicorn, wait_until_healthy
from models import Role, User, db
from services.links import redact_tokens
from tests.conftest import TEST_ENCRYPTION_KEY, TEST_HASH_KEY, base_config, migrate

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "nurse@clinic.example"
NEW_PASSWORD = "a brand new long passphrase"
REQUEST_TIMEOUT_S = 10.0
MAIL_TIMEOUT_S = 10.0
CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /reset-password/abc_DEF-123 HTTP/1.1", "GET /reset-password/[redacted] HTTP/1.1"),
        ("GET /reset-password/abc?x=1 HTTP/1.1", "GET /reset-password/[redacted]?x=1 HTTP/1.1"),
        ("GET /reset%2Dpassword/abc HTTP/1.1", "GET /reset%2Dpassword/[redacted] HTTP/1.1"),
        ("GET /reset-password%2fabc HTTP/1.1", "GET /reset-password%2f[redacted] HTTP/1.1"),
        ("GET /reset-password HTTP/1.1", "GET /reset-password HTTP/1.1"),
        ("POST /forgot-password HTTP/1.1", "POST /forgot-password HTTP/1.1"),
    ],
)
def test_token_paths_are_redacted(line, expected):
    assert redact_tokens(line) == expected


def _seed_user(url: str, password_hash: str) -> None:
    from app import create_app

    app = create_app(base_config(url))
    with app.app_context():
        role = db.session.scalar(sa.select(Role).where(Role.name == "Practitioner"))
        db.session.add(User(email=EMAIL, password_hash=password_hash, role=role))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def gunicorn_server(tmp_path, smtp_server, password_hash) -> Iterator[tuple[str, Path]]:
    """gunicorn -c gunicorn.conf.py in production mode on a free loopback port, a fresh SQLite
    database and the test SMTP server; yields its base URL and the file its output goes to."""
    url = f"sqlite:///{tmp_path / 'gunicorn.sqlite3'}"
    migrate(url)
    _seed_user(url, password_hash)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MFA_ENV": "production",
        "SECRET_KEY": secrets.token_hex(32),
        "DATABASE_URL": url,
        "MFA_BASE_URL": base,
        "MFA_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
        "MFA_HASH_KEY": TEST_HASH_KEY,
        "MFA_KEYS_FILE": str(tmp_path / "mfa_keys.json"),
        "MFA_MAIL_TRANSPORT": "smtp",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(conftest.SMTP_PORT),
        "MFA_SECURE_COOKIES": "0",  # plain http on loopback
        "MFA_TRUSTED_PROXIES": "0",
        "MFA_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        # Recent gunicorn opens a control socket there: keep it apart from any other gunicorn.
        "XDG_RUNTIME_DIR": str(tmp_path),
    }
    for name in ("MFA_TRUSTED_HOSTS", "MFA_TRUST_FORWARDED_HOST", "GUNICORN_CMD_ARGS"):
        env.pop(name, None)
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_healthy(port, process, log_path)
            yield base, log_path
        finally:
            stop_gunicorn(process)


def _csrf(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def _post(opener, url: str, form: dict[str, str]):
    data = urllib.parse.urlencode(form).encode()
    return opener.open(urllib.request.Request(url, data=data), timeout=REQUEST_TIMEOUT_S)


def test_reset_through_gunicorn_leaves_no_token_in_the_access_log(gunicorn_server, mailbox):
    base, log_path = gunicorn_server
    # A browser: its own cookies, redirects followed, and no proxy from the environment.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(CookieJar())
    )
    page = opener.open(f"{base}/forgot-password", timeout=REQUEST_TIMEOUT_S)
    sent = _post(
        opener,
        f"{base}/forgot-password",
        {"csrf_token": _csrf(page.read().decode()), "email": EMAIL},
    )
    assert sent.status == 200
    sent.read()
    deadline = time.monotonic() + MAIL_TIMEOUT_S  # the email leaves after the response
    while not mailbox.to(EMAIL) and time.monotonic() < deadline:
        time.sleep(0.05)
    (message,) = mailbox.to(EMAIL)
    link = re.search(r"http://\S+/reset-password/\S+", mailbox.text(message)).group(0)
    token = link.rsplit("/", 1)[1]
    assert link == f"{base}/reset-password/{token}" and len(token) == 43

    form_page = opener.open(link, timeout=REQUEST_TIMEOUT_S)
    assert form_page.status == 200
    assert form_page.url == f"{base}/reset-password"  # the redirect took the token away
    html = form_page.read().decode()
    assert token not in html and "Choose a new password" in html
    done = _post(
        opener,
        f"{base}/reset-password",
        {"csrf_token": _csrf(html), "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert done.status == 200 and done.url == f"{base}/sign-in"
    assert "Your password has been changed" in done.read().decode()

    # gunicorn writes the access line just after the response; wait for the last one.
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    while '"POST /reset-password' not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = log_path.read_text()
    assert token not in log
    assert '"GET /reset-password/[redacted] HTTP/1.1" 303' in log
    assert '"GET /reset-password HTTP/1.1" 200' in log
    assert '"POST /reset-password HTTP/1.1" 303' in log
