"""Sign-ins through ``app.test_client()`` against the same database, no HTTP and no
gunicorn: SQL statements and server time per request."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from bench.client import Reply
from bench.load import LoadResult, Samples, drive
from bench.server import HOST
from bench.signin import STEPS, WHOLE, sign_in_next
from bench.users import UserPool, verify_seconds

if TYPE_CHECKING:
    from flask import Flask

IN_PROCESS_WARMUP = 3  # in-process sign-ins not timed (first requests fill SQLAlchemy caches)
# Sign-ins here run one after another: a few failures in a row already say it all, and the
# app logs a traceback for each.
IN_PROCESS_MAX_ERRORS = 5


class StatementCounter:
    """A ``before_cursor_execute`` listener: every statement sent to the database counts."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *_args: object) -> None:
        self.count += 1


class TestClientBrowser:
    """The Flask test client as a bench client. Each request starts the statement count."""

    note = " (in-process)"

    def __init__(self, app: Flask, counter: StatementCounter) -> None:
        self._app = app
        self._counter = counter
        self._client = app.test_client()

    def clear_cookies(self) -> None:
        self._client = self._app.test_client()

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[Reply, float]:
        """The reply and the seconds the app took to answer."""
        self._counter.count = 0
        started = time.perf_counter()
        # Production trusts only MFA_BASE_URL's host; the test client would say "localhost".
        response = self._client.open(path, method=method, data=form, base_url=f"http://{HOST}")
        seconds = time.perf_counter() - started
        location = response.headers.get("Location", "")
        return Reply(response.status_code, location, response.get_data(as_text=True)), seconds


class StepCosts:
    """One sign-in's seconds and SQL statements by step; a step's statements are read from
    the counter when the step is recorded, right after its request."""

    def __init__(self, counter: StatementCounter) -> None:
        self._counter = counter
        self.steps: dict[str, tuple[float, int]] = {}

    def add(self, step: str, seconds: float) -> None:
        self.steps[step] = (seconds, self._counter.count)


@dataclass
class InProcessResult:
    load: LoadResult  # its samples: server seconds by step of the timed sign-ins
    statements: dict[str, list[int]]
    argon2_s: list[float]

    @property
    def seconds(self) -> Samples:
        return self.load.samples

    @property
    def sign_ins(self) -> int:
        return len(self.seconds.of(WHOLE))


def in_process(
    pool: UserPool, password: str, password_hash: str, count: int, stop_at: float
) -> InProcessResult:
    """Sign-ins one after another against the same database. Counts each request's SQL
    statements and times it; the first few sign-ins are not timed (SQLAlchemy's and Jinja's
    caches fill on first use).

    After each timed sign-in the password hash is verified once on its own, so "sign-in minus
    hash" subtracts an argon2 time taken under the same conditions (CPU clock, other load).
    """
    from app import create_app
    from models import db

    statements: dict[str, list[int]] = {step: [] for step in STEPS}
    argon2_s: list[float] = []
    app = create_app()
    with app.app_context():
        engine = db.engine
    # No app context is held while the requests run, so each request pushes its own as under
    # gunicorn; a held one would be shared, and `g` (the request's session row, its CSRF
    # token) would leak from one request into the next.
    counter = StatementCounter()
    browser = TestClientBrowser(app, counter)
    attempts = itertools.count()

    def unit(_index: int, samples: Samples) -> None:
        timed = next(attempts) >= IN_PROCESS_WARMUP
        costs = StepCosts(counter)
        sign_in_next(browser, pool, password, costs, stop_at)
        for step, (_, sent) in costs.steps.items():
            statements[step].append(sent)
        if not timed:
            return
        for step, (seconds, _) in costs.steps.items():
            samples.add(step, seconds)
        samples.add(WHOLE, sum(seconds for seconds, _ in costs.steps.values()))
        argon2_s.append(verify_seconds(password_hash, password))

    sa.event.listen(engine, "before_cursor_execute", counter)
    try:
        load = drive(
            1,
            unit,
            stop_at,
            count=IN_PROCESS_WARMUP + count,
            error_limit=IN_PROCESS_MAX_ERRORS,
        )
    finally:
        sa.event.remove(engine, "before_cursor_execute", counter)
        with app.app_context():
            db.session.remove()
        engine.dispose()
    return InProcessResult(load, statements, argon2_s)
