"""A live server on loopback and Debian's Chromium driven by Playwright.

Chromium comes from apt (/usr/bin/chromium); Playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import base_config, migrate, missing, reset_database

CHROMIUM = os.environ.get("MFA_TEST_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"


class LiveServer:
    def __init__(self, app) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        missing(f"Chromium not found at {CHROMIUM}; install Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def live_database(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('live') / 'live.sqlite3'}"
    migrate(url)
    return url


@pytest.fixture
def live_server(live_database, smtp_server, sms_server) -> Iterator[LiveServer]:
    from app import create_app
    from models import db

    # As under `make run`: plain http on loopback, so no Secure/__Host- cookie.
    app = create_app(
        base_config(
            live_database,
            SESSION_COOKIE_SECURE=False,
            SESSION_COOKIE_NAME="session",
            WTF_CSRF_SSL_STRICT=False,
            MFA_TRUSTED_HOSTS="127.0.0.1",  # the live server's address
        )
    )
    with app.app_context():
        reset_database()
    with LiveServer(app) as server:
        yield server
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(params=[True, False], ids=["js-on", "js-off"])
def page(request, browser):
    context = browser.new_context(
        java_script_enabled=request.param, viewport={"width": 1000, "height": 760}
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.js_enabled = request.param
    yield page
    context.close()


def shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    suffix = "js" if getattr(page, "js_enabled", True) else "nojs"
    path = SCREENSHOTS / f"{name}-{suffix}.png"
    # caret="initial": hiding the caret injects a <style> that our CSP (rightly) blocks.
    page.screenshot(path=str(path), full_page=True, caret="initial")
    return path
