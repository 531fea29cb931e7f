"""Many synthetic audit events, inserted in bulk: PostgreSQL's COPY, SQLite's executemany of
prepared rows inside one transaction. For `make bench` (a million events behind the audit
page) and for the tests that need a big log (the CSV export's memory).

Rows go in as the app would store them (UTC times, in SQLite in SQLAlchemy's text format), so
the indexes and the queries see what they see in production.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

# Roughly what a clinic's log holds: mostly sign-ins and their steps.
EVENT_MIX = (
    ("sign_in.password_ok", 30),
    ("sign_in.succeeded", 30),
    ("sign_out", 15),
    ("mfa.code_failed", 6),
    ("sign_in.password_failed", 6),
    ("mfa.code_sent", 5),
    ("reauth.succeeded", 3),
    ("device.remembered", 2),
    ("mfa.factor_added", 1),
    ("password.changed", 1),
    ("admin.user_rules_changed", 1),
)
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "cli",
)
BATCH = 20_000
# SQLAlchemy's text form of a DateTime in SQLite; the triggers and the keyset compare it.
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
COLUMNS = ("created_at", "event", "actor_id", "subject_id", "ip", "user_agent", "details")
SQLITE_INSERT = (
    "INSERT INTO audit_events (created_at, event, actor_id, subject_id, ip, user_agent, details)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
POSTGRESQL_COPY = (
    "COPY audit_events (created_at, event, actor_id, subject_id, ip, user_agent, details)"
    " FROM STDIN"
)


def synthetic(
    count: int, user_ids: Sequence[int], newest: datetime, days: int = 365, seed: int = 9
) -> Iterator[tuple[datetime, str, int | None, int | None, str, str, str]]:
    """``count`` events spread over ``days`` up to ``newest``, oldest first. About one in
    eight shares its time with the event before it (two steps of one request), so pages
    must order ties by id."""
    rng = random.Random(seed)
    names = [name for name, _ in EVENT_MIX]
    weights = [weight for _, weight in EVENT_MIX]
    span = timedelta(days=days)
    start = newest - span
    moment = start
    ips = [f"10.{a}.{b}.{c}" for a in range(2) for b in range(10) for c in range(1, 11)]
    for index in range(count):
        if index == 0 or rng.random() >= 0.125:
            moment = start + span * ((index + rng.random()) / count)
        event = rng.choices(names, weights)[0]
        user = rng.choice(user_ids) if user_ids else None
        actor = None if event in ("sign_in.password_failed", "sign_in.password_ok") else user
        details = {"method": "totp"} if event == "sign_in.succeeded" else {}
        yield (
            moment,
            event,
            actor,
            user,
            rng.choice(ips),
            rng.choice(AGENTS),
            json.dumps(details),
        )


def bulk_insert(
    engine: sa.Engine,
    rows: Iterator[tuple],
    stop_at: float | None = None,
    *,
    rebuild_indexes: bool = False,
) -> int:
    """Insert ``rows`` (tuples in COLUMNS order) until they run out or the monotonic clock
    passes ``stop_at``; returns how many went in. Commits every BATCH rows.

    ``rebuild_indexes``: drop the table's indexes first and create them again after (the
    same ones, from the model): twice as fast for a million rows as keeping them up to date.
    """
    from models import AuditEvent

    indexes = list(AuditEvent.__table__.indexes) if rebuild_indexes else []
    with engine.begin() as conn:
        for index in indexes:
            index.drop(conn)
    done = 0
    try:
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            postgresql = engine.dialect.name == "postgresql"
            while stop_at is None or time.monotonic() < stop_at:
                batch = [row for _, row in zip(range(BATCH), rows, strict=False)]
                if not batch:
                    break
                if postgresql:
                    _copy(raw, batch)
                else:
                    raw.executemany(
                        SQLITE_INSERT,
                        [(r[0].astimezone(UTC).strftime(SQLITE_TIME), *r[1:]) for r in batch],
                    )
                raw.commit()
                done += len(batch)
    finally:
        with engine.begin() as conn:
            for index in indexes:
                index.create(conn)
    return done


def _copy(raw: Any, batch: list[tuple]) -> None:
    with raw.cursor() as cursor, cursor.copy(POSTGRESQL_COPY) as copy:
        for row in batch:
            copy.write_row(row)
