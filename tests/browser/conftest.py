"""A live server on loopback and Debian's Chromium driven by Playwright, and axe-core on every
page state a test takes a screenshot of (UX-2).

Chromium comes from apt (/usr/bin/chromium); Playwright never downloads a browser here, and
axe-core comes inside the axe-playwright-python package.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
# axe runs at both widths whatever the test's own viewport, which is put back afterwards.
AXE_VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
AXE_BLOCKING = ("critical", "serious")  # UX-2: zero of these
NOSCRIPT_TAG = re.compile(r"<(/?)noscript\b", re.IGNORECASE)
IMPACTS = ("critical", "serious", "moderate", "minor")


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


def _suffix(page) -> str:
    return "js" if getattr(page, "js_enabled", True) else "nojs"


def shot(page, name: str) -> Path:
    """Save a screenshot for a human look; every page state worth one is also checked by axe."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}-{_suffix(page)}.png"
    # caret="initial": hiding the caret injects a <style> that our CSP (rightly) blocks.
    page.screenshot(path=str(path), full_page=True, caret="initial")
    check_a11y(page, name)
    return path


@dataclass
class AxeRun:
    state: str  # screenshot name plus -js/-nojs
    width: str  # a key of AXE_VIEWPORTS
    violations: list[dict[str, Any]]


AXE_RUNS: list[AxeRun] = []  # every run of the session, for the summary at the end


def _axe(page) -> list[dict[str, Any]]:
    from axe_playwright_python.sync_playwright import Axe

    return Axe().run(page).response["violations"]


def _axe_at_each_width(page) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for width, size in AXE_VIEWPORTS.items():
        page.set_viewport_size(size)
        found[width] = _axe(page)
    return found


def _axe_without_javascript(page) -> dict[str, list[dict[str, Any]]]:
    """axe needs timers, which never fire in a page with JavaScript off. So the page's DOM is
    loaded again into a page whose scripts are off while it loads (none of the site's scripts
    run) and on only for axe. axe skips what is inside <noscript>, which is exactly what these
    readers get, so those elements become <div>s."""
    html = NOSCRIPT_TAG.sub(r"<\1div", page.content())
    url = page.url
    context = page.context.browser.new_context(viewport=AXE_VIEWPORTS["desktop"])
    try:
        copy = context.new_page()
        cdp = context.new_cdp_session(copy)
        cdp.send("Emulation.setScriptExecutionDisabled", {"value": True})

        def serve(route) -> None:  # the same document; its stylesheet from the live server
            if route.request.resource_type == "document":
                route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)
            else:
                route.continue_()

        copy.route("**/*", serve)
        copy.goto(url)
        cdp.send("Emulation.setScriptExecutionDisabled", {"value": False})
        return _axe_at_each_width(copy)
    finally:
        context.close()


def check_a11y(page, name: str) -> None:
    """Run axe-core on the page as it is now at desktop and phone width; fail on any critical
    or serious violation, naming the rule, its impact and the elements."""
    state = f"{name}-{_suffix(page)}"
    if getattr(page, "js_enabled", True):
        viewport = page.viewport_size
        try:
            found = _axe_at_each_width(page)
        finally:
            page.set_viewport_size(viewport)
    else:
        found = _axe_without_javascript(page)
    problems = []
    for width, violations in found.items():
        AXE_RUNS.append(AxeRun(state, width, violations))
        for v in violations:
            if v["impact"] in AXE_BLOCKING:
                problems.append(f"  [{width}] {v['id']} ({v['impact']}): {v['help']}")
                problems += (
                    f"      {' '.join(node['target'])}: {node['html'][:120]}" for node in v["nodes"]
                )
    if problems:
        pytest.fail(f"axe-core on {state}:\n" + "\n".join(problems), pytrace=False)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Page states x widths and violations by impact, for CI logs and closing notes."""
    if not AXE_RUNS:
        return
    states = {run.state for run in AXE_RUNS}
    terminalreporter.write_sep("-", "axe-core accessibility checks")
    terminalreporter.write_line(
        f"{len(states)} page states x {len(AXE_VIEWPORTS)} widths = {len(AXE_RUNS)} runs"
    )
    for width in AXE_VIEWPORTS:
        by_impact: Counter[str] = Counter()
        for run in AXE_RUNS:
            if run.width == width:
                by_impact.update(v["impact"] for v in run.violations)
        counts = ", ".join(f"{impact} {by_impact[impact]}" for impact in IMPACTS)
        terminalreporter.write_line(f"{width}: violations {counts}")
    rules: Counter[tuple[str, str]] = Counter(
        (v["id"], v["impact"]) for run in AXE_RUNS for v in run.violations
    )
    for (rule, impact), runs in rules.most_common():
        terminalreporter.write_line(f"  {rule} ({impact}) in {runs} runs")
