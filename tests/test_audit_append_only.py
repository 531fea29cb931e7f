"""The audit log is append-only (ADM-9): no route changes or deletes an event, the database
itself refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL), and the one way out is the
retention purge from the command line, which is itself recorded."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa

from models import AuditEvent, AuditPurgePermit, User, db
from services import localtime
from services.audit import purge_permit
from tests.conftest import _postgres_database, base_config, migrate

UPDATE_REFUSED = "audit_events is append-only: an event cannot be changed"
DELETE_REFUSED = "audit_events is append-only: events are removed only by flask audit purge"
OLD = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
NEW = datetime(2026, 2, 15, 12, 0, tzinfo=UTC)
CHANGES_EVENTS = re.compile(r"^\s*(UPDATE|DELETE\s+FROM|TRUNCATE)\b[^;]*\baudit_events\b", re.I)


def add(app, created_at: datetime, **fields) -> int:
    with app.app_context():
        row = AuditEvent(created_at=created_at, event="sign_in.succeeded", **fields)
        db.session.add(row)
        db.session.commit()
        return row.id


def refused(app, statement: str, params: dict | None = None) -> str:
    """Run ``statement`` on its own connection; the database's error message."""
    with app.app_context(), db.engine.connect() as conn:
        with pytest.raises(sa.exc.DBAPIError) as caught:
            conn.execute(sa.text(statement), params or {})
        conn.rollback()
    return str(caught.value.orig)


def events(app) -> list[tuple[int, str]]:
    with app.app_context():
        return [
            tuple(r)
            for r in db.session.execute(
                sa.select(AuditEvent.id, AuditEvent.event).order_by(AuditEvent.id)
            )
        ]


def test_raw_update_is_refused_with_the_triggers_message(app, make_user):
    ana = make_user("ana@clinic.example")
    event = add(app, NEW, actor_id=ana, subject_id=ana, ip="203.0.113.7")
    for statement in [
        "UPDATE audit_events SET event = 'sign_out'",
        "UPDATE audit_events SET ip = '10.0.0.1' WHERE id = :id",
        "UPDATE audit_events SET details = '{\"forged\": true}'",
        # Clearing who did it is only what ON DELETE SET NULL does once the user is gone.
        "UPDATE audit_events SET actor_id = NULL",
        "UPDATE audit_events SET subject_id = NULL WHERE id = :id",
    ]:
        assert UPDATE_REFUSED in refused(app, statement, {"id": event}), statement
    with app.app_context():
        row = db.session.get(AuditEvent, event)
        assert (row.event, row.ip, row.actor_id, row.subject_id, row.details) == (
            "sign_in.succeeded",
            "203.0.113.7",
            ana,
            ana,
            {},
        )


def test_raw_delete_is_refused_with_the_triggers_message(app):
    add(app, OLD)
    add(app, NEW)
    assert DELETE_REFUSED in refused(app, "DELETE FROM audit_events")
    assert DELETE_REFUSED in refused(
        app, "DELETE FROM audit_events WHERE created_at < :t", {"t": NEW}
    )
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            assert DELETE_REFUSED in refused(app, "TRUNCATE audit_events")
            assert DELETE_REFUSED in refused(app, "TRUNCATE users CASCADE")
    assert len(events(app)) == 2


def test_a_permit_only_reaches_back_to_its_date_and_ends_with_its_block(app):
    """Inside the purge's permit, a row newer than the cut-off is still refused; once the
    block is over, nothing may be deleted again, in the same transaction or the next."""
    old, new = add(app, OLD), add(app, NEW)
    cutoff = datetime(2025, 6, 1, tzinfo=UTC)
    with app.app_context():
        with pytest.raises(sa.exc.DBAPIError) as caught, purge_permit(cutoff):
            db.session.execute(sa.delete(AuditEvent).where(AuditEvent.id == new))
        assert DELETE_REFUSED in str(caught.value.orig)
        db.session.rollback()
        with purge_permit(cutoff):
            db.session.execute(sa.delete(AuditEvent).where(AuditEvent.id == old))
        with pytest.raises(sa.exc.DBAPIError):
            db.session.execute(sa.delete(AuditEvent).where(AuditEvent.id == new))
        db.session.rollback()
        with purge_permit(cutoff):
            db.session.execute(sa.delete(AuditEvent).where(AuditEvent.id == old))
        db.session.commit()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditPurgePermit)) == 0
    assert [i for i, _ in events(app)] == [new]
    assert DELETE_REFUSED in refused(app, "DELETE FROM audit_events")


def test_deleting_a_user_clears_their_references_and_keeps_the_events(app, make_user):
    """ON DELETE SET NULL is the one update allowed: the id of a user who is gone."""
    ana, bo = make_user("ana@clinic.example"), make_user("bo@clinic.example")
    mixed = add(app, NEW, actor_id=bo, subject_id=ana)
    own = add(app, NEW, actor_id=ana, subject_id=ana)
    with app.app_context():
        db.session.execute(sa.delete(User).where(User.id == ana))
        db.session.commit()
        rows = {r.id: (r.actor_id, r.subject_id) for r in db.session.scalars(sa.select(AuditEvent))}
    assert rows == {mixed: (bo, None), own: (None, None)}
    assert UPDATE_REFUSED in refused(app, "UPDATE audit_events SET actor_id = NULL")


def test_purge_from_the_command_line_deletes_old_events_and_is_recorded(app, runner):
    """`flask audit purge --before DATE`: events from before the clinic's midnight of DATE
    go, the rest stay, and the purge is written after the delete, so it survives it."""
    app.config["MFA_TIME_ZONE"] = "Australia/Sydney"
    midnight = datetime(2025, 6, 30, 14, 0, tzinfo=UTC)  # 1 July 2025 begins in Sydney
    just_before = add(app, midnight - timedelta(microseconds=1))
    old = add(app, OLD)
    at_midnight = add(app, midnight)
    new = add(app, NEW)
    asked = runner.invoke(args=["audit", "purge", "--before", "2025-07-01"], input="n\n")
    assert asked.exit_code == 1
    assert "Delete 2 audit events from before 2025-07-01 (Australia/Sydney)? " in asked.output
    assert len(events(app)) == 4
    done = runner.invoke(args=["audit", "purge", "--before", "2025-07-01", "--yes"])
    assert done.exit_code == 0, done.output
    assert done.output == "Deleted 2 audit events from before 2025-07-01; the purge is recorded.\n"
    left = events(app)
    assert [i for i, _ in left[:2]] == [at_midnight, new]
    assert just_before not in dict(left) and old not in dict(left)
    purged_id, name = left[2]
    assert name == "audit.purged"
    with app.app_context():
        purged = db.session.get(AuditEvent, purged_id)
        assert purged.details == {"before": "2025-07-01", "deleted": 2, "via": "cli"}
        assert purged.user_agent == "cli"
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditPurgePermit)) == 0
    # The permit is gone with the purge: the next DELETE is refused again.
    assert DELETE_REFUSED in refused(app, "DELETE FROM audit_events")
    again = runner.invoke(args=["audit", "purge", "--before", "2025-07-01", "--yes"])
    assert again.output == "No audit events from before 2025-07-01; nothing deleted.\n"


def test_purge_refuses_a_day_after_today(app, runner):
    add(app, NEW)
    with app.app_context():
        tomorrow = localtime.today() + timedelta(days=1)
    result = runner.invoke(args=["audit", "purge", "--before", tomorrow.isoformat(), "--yes"])
    assert result.exit_code == 1
    assert f"{tomorrow.isoformat()} is after today: choose today or an earlier day." in (
        result.output
    )
    bad = runner.invoke(args=["audit", "purge", "--before", "last year", "--yes"])
    assert bad.exit_code == 2
    assert len(events(app)) == 1


def test_no_route_changes_or_deletes_an_event(app, client, auth, make_user, enrol_totp):
    """Every route the app has, every method, plain and htmx, as a fresh Administrator with a
    valid CSRF token and ids that exist: not one statement updates, deletes or truncates an
    event. The admin area goes first (and is checked to have answered), signing out last."""
    admin = make_user("boss@clinic.example", role="Administrator")
    secret, _ = enrol_totp(admin)
    event = add(app, NEW, actor_id=admin, subject_id=admin)
    auth.login("boss@clinic.example")
    assert auth.verify_totp(pyotp.TOTP(secret).now()).status_code == 303
    token = auth.csrf_token("/admin/audit")
    seen: list[str] = []
    answers: dict[tuple[str, str], int] = {}
    with app.app_context():
        engine = db.engine

    def watch(_conn, _cursor, statement, *_args):
        if CHANGES_EVENTS.search(statement):
            seen.append(statement)

    def order(rule) -> tuple[int, str]:
        last = rule.endpoint == "auth.sign_out"
        return (2 if last else 0 if rule.endpoint.startswith("admin.") else 1, rule.rule)

    sa.event.listen(engine, "before_cursor_execute", watch)
    try:
        for rule in sorted(app.url_map.iter_rules(), key=order):
            if rule.endpoint == "static":
                continue
            path = re.sub(r"<(?:int:)?(\w+)>", str(event), rule.rule)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                for headers in ({}, {"HX-Request": "true"}):
                    response = client.open(
                        path, method=method, headers=headers, data={"csrf_token": token}
                    )
                    response.get_data()  # a streamed answer (the CSV) runs to its end
                    answers.setdefault((method, path), response.status_code)
    finally:
        sa.event.remove(engine, "before_cursor_execute", watch)
    assert answers[("GET", "/admin/audit")] == 200
    assert answers[("GET", "/admin/audit.csv")] == 200
    assert answers[("POST", "/admin/security")] == 422  # reached the view: the form was empty
    assert len(answers) > 30
    assert seen == []
    assert (event, "sign_in.succeeded") in events(app)


# --- the migration installs the rule and its downgrade removes it ------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    database = _postgres_database()
    url = next(database)
    yield url
    database.close()


def insert_without_the_model() -> None:
    """An event written in plain SQL: the schema at any revision takes it."""
    db.session.execute(
        sa.text(
            "INSERT INTO audit_events (created_at, event, ip, user_agent, details)"
            " VALUES (:t, 'sign_in.succeeded', '', '', '{}')"
        ),
        {"t": NEW},
    )
    db.session.commit()


def test_the_migration_installs_the_triggers_and_its_downgrade_removes_them(fresh_database):
    from flask_migrate import downgrade, upgrade

    from app import create_app

    migrate(fresh_database)
    app = create_app(base_config(fresh_database))
    with app.app_context():
        insert_without_the_model()
    assert UPDATE_REFUSED in refused(app, "UPDATE audit_events SET event = 'x'")
    with app.app_context():
        downgrade(revision="0006_rollout_and_overrides")
        db.session.execute(sa.text("UPDATE audit_events SET event = 'changed'"))
        db.session.execute(sa.text("DELETE FROM audit_events"))
        db.session.commit()
        upgrade()
        insert_without_the_model()
    assert DELETE_REFUSED in refused(app, "DELETE FROM audit_events")
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_the_tests_reset_goes_through_the_permit_not_around_the_rule(app):
    """conftest.reset_database empties the log with a permit for everything, in its own
    transaction; the triggers are untouched and refuse as soon as it is over."""
    from tests.conftest import reset_database

    add(app, OLD)
    with app.app_context():
        reset_database()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == 0
    add(app, OLD)
    assert DELETE_REFUSED in refused(app, "DELETE FROM audit_events")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditPurgePermit)) == 0
