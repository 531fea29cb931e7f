"""The users page (ADM-7, PERF-2) over the seeded clinic of 5,000 people, in-process: an
Administrator signs in through ``app.test_client()`` (password and TOTP, as a browser does),
then each view of the list is asked for repeatedly, timed and its SQL statements counted.

The list must cost the same statements whatever its page size: the first two views differ
only in that (25 and 200 people), and the report says whether their counts agree.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import sqlalchemy as sa

from bench.inprocess import StatementCounter, TestClientBrowser
from bench.load import Samples, StepFailed
from bench.signin import begin_sign_in, post_code
from bench.users import BenchUser

# (label, URL). The first two are the page-size pair whose statement counts must agree.
VIEWS = (
    ("everyone, by name, 25 a page", "/admin/users"),
    ("everyone, by name, 200 a page", "/admin/users?per_page=200"),
    ("search 'ada l' as typed", "/admin/users?q=ada+l"),
    ("not set up, by last sign-in", "/admin/users?status=not_enrolled&sort=last_sign_in&dir=desc"),
    ("locked (password or code)", "/admin/users?status=locked&per_page=100"),
    ("by role, page 40", "/admin/users?sort=role&page=40"),
)
PAGE_SIZE_PAIR = (VIEWS[0][0], VIEWS[1][0])
WARMUP = 2  # requests per view not timed (template compiling, SQLAlchemy's caches)
COUNT_HEADING = re.compile(r'<h2 id="results-heading">(\d+) (?:person|people)')


@dataclass
class ViewResult:
    url: str
    matched: int  # people matching, as the page says
    statements: int
    seconds: list[float] = field(default_factory=list)


@dataclass
class UsersPageResult:
    people: int
    views: dict[str, ViewResult]

    @property
    def slowest_median_s(self) -> float | None:
        from statistics import median

        medians = [median(v.seconds) for v in self.views.values() if v.seconds]
        return max(medians) if medians else None

    @property
    def same_statements_at_both_page_sizes(self) -> bool | None:
        small, large = (self.views.get(label) for label in PAGE_SIZE_PAIR)
        if small is None or large is None:
            return None
        return small.statements == large.statements


def users_page(
    admin: BenchUser, password: str, people: int, repeat: int, stop_at: float
) -> UsersPageResult:
    """Sign ``admin`` in, then ask for each view ``repeat`` times (fewer if ``stop_at``, a
    monotonic time, comes first)."""
    from app import create_app
    from models import db

    app = create_app()
    with app.app_context():
        engine = db.engine
    counter = StatementCounter()
    browser = TestClientBrowser(app, counter)
    sa.event.listen(engine, "before_cursor_execute", counter)
    try:
        csrf = begin_sign_in(browser, admin, password, Samples())
        post_code(browser, admin, csrf, Samples())
        views: dict[str, ViewResult] = {}
        for label, url in VIEWS:
            result: ViewResult | None = None
            for attempt in range(WARMUP + repeat):
                if attempt >= WARMUP and time.monotonic() > stop_at:
                    break
                reply, seconds = browser.request("GET", url)
                if reply.status != 200:
                    raise StepFailed(f"GET {url}", f"HTTP {reply.status} (in-process)")
                if result is None:
                    found = COUNT_HEADING.search(reply.body)
                    result = ViewResult(url, int(found.group(1)) if found else -1, counter.count)
                # The fewest seen: a request may also refresh the session's last-seen time
                # (once a minute), which is not the page's cost.
                result.statements = min(result.statements, counter.count)
                if attempt >= WARMUP:
                    result.seconds.append(seconds)
            assert result is not None
            views[label] = result
    finally:
        sa.event.remove(engine, "before_cursor_execute", counter)
        with app.app_context():
            db.session.remove()
        engine.dispose()
    return UsersPageResult(people, views)
