"""The audit page on a big log (PERF-2: "the audit page filters 1,000,000 events in under 200
ms"): seed the events in bulk, sign an Administrator in through the test client, and time
GET /admin/audit under each filter, its first page and a deep one, counting SQL statements.

A deep page is what "Older" leads to far down the list: the cursor is placed half-way through
the filter's time span, so about half the matching events are newer than the page shown.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pyotp
import sqlalchemy as sa

from bench.audit_events import bulk_insert, synthetic
from bench.inprocess import StatementCounter, TestClientBrowser
from bench.load import StepFailed
from bench.signin import begin_sign_in, call, post_code
from bench.users import BenchUser

ADMIN_EMAIL = "bench-audit-admin@clinic.example"  # apart from the users page's admin
SPAN_DAYS = 365
TIMED = 5  # timed requests per page, after one untimed
TARGET_S = 0.200
CLINIC_SIZE = 60


class _Last:
    """A recorder that keeps the last request's seconds."""

    seconds = 0.0

    def add(self, step: str, seconds: float) -> None:
        self.seconds = seconds


@dataclass
class PageTiming:
    name: str
    query: str  # the filter's query string, for the report
    first_s: float | None = None
    first_statements: int | None = None
    first_rows: int = 0
    deep_s: float | None = None
    deep_statements: int | None = None
    deep_rows: int = 0


@dataclass
class AuditPageResult:
    events: int = 0
    asked: int = 0
    seed_s: float = 0.0
    analyzed: bool = False
    pages: list[PageTiming] = field(default_factory=list)
    error: str = ""  # why the timing stopped early, if it did

    @property
    def slowest_s(self) -> float | None:
        times = [t for p in self.pages for t in (p.first_s, p.deep_s) if t is not None]
        return max(times) if times else None


def seed_events(
    count: int, password_hash: str, stop_at: float
) -> tuple[BenchUser, int, float, bool]:
    """An Administrator with a known TOTP secret, then ``count`` events over a year among the
    seeded users. Returns the admin, how many events went in (fewer if time ran out), the
    seconds it took and whether statistics were gathered (PostgreSQL: ANALYZE, as autovacuum
    would do after such a load; SQLite is left as an installation leaves it: none)."""
    from app import create_app
    from models import MfaFactor, Role, User, db
    from services import crypto

    admin = BenchUser(ADMIN_EMAIL, pyotp.random_base32(32))
    app = create_app()
    started = time.perf_counter()
    with app.app_context():
        try:
            role_id = db.session.scalar(sa.select(Role.id).where(Role.name == "Administrator"))
            user = User(email=admin.email, full_name="Bench admin", password_hash=password_hash)
            user.role_id = role_id
            db.session.add(user)
            db.session.flush()
            db.session.add(
                MfaFactor(
                    user_id=user.id,
                    kind="totp",
                    is_default=True,
                    secret_encrypted=crypto.encrypt(admin.secret),
                )
            )
            db.session.commit()
            # A clinic's worth of people share the log, so one person has thousands of
            # events, as the busiest would.
            user_ids = list(
                db.session.scalars(sa.select(User.id).order_by(User.id).limit(CLINIC_SIZE))
            )
            newest = datetime.now(UTC) - timedelta(minutes=5)
            events = synthetic(count, user_ids, newest, days=SPAN_DAYS)
            done = bulk_insert(db.engine, events, stop_at, rebuild_indexes=True)
            analyzed = db.engine.dialect.name == "postgresql"
            if analyzed:
                with db.engine.connect() as conn:
                    conn.execute(sa.text("ANALYZE audit_events"))
                    conn.commit()
        finally:
            db.session.remove()
            db.engine.dispose()
    return admin, done, time.perf_counter() - started, analyzed


def _cases(app) -> list[tuple[str, dict[str, str], datetime, datetime]]:
    """(name, filters, start, end of the span the filter covers) on the seeded data."""
    from models import AuditEvent, User, db
    from services import localtime

    with app.app_context():
        oldest = db.session.scalar(sa.select(sa.func.min(AuditEvent.created_at)))
        newest = db.session.scalar(sa.select(sa.func.max(AuditEvent.created_at)))
        busy = db.session.execute(
            sa.select(User.email)
            .join(AuditEvent, AuditEvent.subject_id == User.id)
            .where(AuditEvent.created_at >= newest - timedelta(days=2))
            .group_by(User.email)
            .order_by(sa.func.count().desc())
            .limit(1)
        ).scalar()
        today = localtime.local(newest).date()
        week = today - timedelta(days=6)
        month = today - timedelta(days=29)
        week_start = localtime.start_of(week)
        month_start = localtime.start_of(month)
        db.session.remove()
    return [
        ("no filter", {}, oldest, newest),
        ("event: wrong code", {"event": "mfa.code_failed"}, oldest, newest),
        ("one person (actor or subject)", {"user": busy or ""}, oldest, newest),
        ("one IP address", {"ip": "10.1.3.7"}, oldest, newest),
        ("the last 7 days", {"from": week.isoformat()}, week_start, newest),
        (
            "person + event + 30 days",
            {"user": busy or "", "event": "sign_in.succeeded", "from": month.isoformat()},
            month_start,
            newest,
        ),
    ]


def measure(admin: BenchUser, password: str, stop_at: float) -> list[PageTiming]:
    """Sign the admin in through the test client, then time each case's first page and a
    deep page: the median of TIMED requests after one untimed, and their SQL statements."""
    from app import create_app
    from models import db
    from services.audit_log import Cursor

    app = create_app()
    with app.app_context():
        engine = db.engine
    counter = StatementCounter()
    browser = TestClientBrowser(app, counter)
    sa.event.listen(engine, "before_cursor_execute", counter)
    timings = []
    try:
        csrf = begin_sign_in(browser, admin, password, _Last())
        post_code(browser, admin, csrf, _Last())
        for name, filters, start, end in _cases(app):
            if time.monotonic() >= stop_at:
                break
            middle = start + (end - start) / 2
            deep = Cursor(middle, 2**53).text()  # after every id at that moment
            timing = PageTiming(name, urlencode(filters))
            timing.first_s, timing.first_statements, timing.first_rows = _time(
                browser, counter, filters
            )
            timing.deep_s, timing.deep_statements, timing.deep_rows = _time(
                browser, counter, {**filters, "before": deep}
            )
            timings.append(timing)
    finally:
        sa.event.remove(engine, "before_cursor_execute", counter)
        with app.app_context():
            db.session.remove()
        engine.dispose()
    return timings


def _time(
    browser: TestClientBrowser, counter: StatementCounter, query: dict[str, str]
) -> tuple[float, int, int]:
    """Median seconds, most statements and rows shown of GET /admin/audit?``query``."""
    path = "/admin/audit?" + urlencode(query)
    seconds, statements = [], []
    last = _Last()
    reply = None
    for attempt in range(TIMED + 1):
        reply = call(browser, last, "GET /admin/audit", path)
        if attempt:
            seconds.append(last.seconds)
            statements.append(counter.count)
    assert reply is not None
    if "<table" not in reply.body and "No events match" not in reply.body:
        raise StepFailed("GET /admin/audit", "neither events nor 'No events match'")
    rows = reply.body.count('<td data-label="Time">')
    return statistics.median(seconds), max(statements), rows
