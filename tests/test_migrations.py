"""Upgrading a clinic's existing database keeps its data (OPS-2).

On SQLite, a batch migration rebuilds a table: copy, DROP, rename. With foreign keys on, the
DROP deletes every row first, and ON DELETE CASCADE / SET NULL would silently empty the
factors, sessions and devices of every user and blank the audit log's people when ``users``
is rebuilt (0010 does). migrations/env.py turns foreign keys off around the migration and
checks them before it commits.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask_migrate import upgrade

from app import create_app
from models import db
from tests.conftest import base_config

BEFORE_USERS_REBUILT = "0009_api_users_tokens"
ROWS = {
    "users": "INSERT INTO users (id, email, full_name, password_hash, role_id, active, "
    "created_at, mfa_failed_attempts, mfa_lockouts, mfa_override, kind) "
    "VALUES (1, 'pat@clinic.example', 'Pat', 'x', 1, 1, '2026-01-01', 0, 0, 'default', 'staff')",
    "mfa_factors": "INSERT INTO mfa_factors (user_id, kind, is_default, last_step, created_at) "
    "VALUES (1, 'totp', 1, 0, '2026-01-01')",
    "user_sessions": "INSERT INTO user_sessions (user_id, state, created_at, last_seen_at, ip, "
    "user_agent, setup_skippable, failed_codes) "
    "VALUES (1, 'ended', '2026-01-01', '2026-01-01', '', '', 0, 0)",
    "audit_events": "INSERT INTO audit_events (created_at, event, actor_id, subject_id, ip, "
    "user_agent, details) VALUES ('2026-01-01', 'sign_in.succeeded', 1, 1, '', '', '{}')",
}


def test_upgrading_sqlite_keeps_the_rows_that_point_at_rebuilt_tables(tmp_path):
    app = create_app(base_config(f"sqlite:///{tmp_path / 'clinic.sqlite3'}"))
    with app.app_context():
        upgrade(revision=BEFORE_USERS_REBUILT)
        with db.engine.begin() as conn:
            role = conn.execute(sa.text("SELECT id FROM roles ORDER BY id LIMIT 1")).scalar()
            if role is None:
                conn.execute(sa.text("INSERT INTO roles (id, name) VALUES (1, 'Practitioner')"))
            for sql in ROWS.values():
                conn.execute(sa.text(sql))
        upgrade()
        with db.engine.connect() as conn:
            counts = {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()  # noqa: S608
                for t in ROWS
            }
            people = conn.execute(sa.text("SELECT actor_id, subject_id FROM audit_events")).one()
            # The app's connections enforce foreign keys again afterwards.
            assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
        db.engine.dispose()
    assert counts == dict.fromkeys(ROWS, 1)
    assert tuple(people) == (1, 1)
