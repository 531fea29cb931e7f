"""audit log: keyset indexes for the viewer, and the database refuses UPDATE and DELETE

Revision ID: 0011_audit_append_only
Revises: 0010_users_bypass_invitations
Create Date: 2026-11-24 04:00:00

The audit log is append-only in the database itself, not only in the app (ADM-9):

- UPDATE is refused, with one exception the schema already promised: when a user row is
  deleted, ``ON DELETE SET NULL`` clears ``actor_id``/``subject_id``. An update may only do
  that (every other column unchanged, the cleared id no longer in ``users``).
- DELETE is refused unless the transaction holds a purge permit, and then only for rows older
  than the permit's cut-off (``flask audit purge``, services/audit.py ``purge_permit``).
  PostgreSQL: ``set_config('clinic_mfa.audit_purge', '<timestamp>', true)``, i.e. SET LOCAL,
  which ends with the transaction. SQLite has no session variables and a trigger in ``main``
  cannot see a TEMP table, so there the permit is a row in ``audit_purge_permits``, inserted
  and deleted inside the purge's own transaction: never committed, never visible to another
  connection (SQLite has one writer at a time).
- PostgreSQL's TRUNCATE fires no row trigger, so a statement trigger refuses it unless the
  permit's cut-off is ``infinity`` (everything may go).

If a later migration rebuilds ``audit_events`` on SQLite (``batch_alter_table`` copies the
table and drops the old one, triggers included), it must create these triggers again. One
that rebuilds ``users`` on SQLite must drop the two triggers first and create them after:
their bodies name ``users``, and SQLite checks every trigger when the rebuilt table is
renamed into place ("error in trigger audit_events_no_update: no such table: main.users").
That is why this migration comes after 0010, which rebuilds ``users``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_audit_append_only"
down_revision = "0010_users_bypass_invitations"
branch_labels = None
depends_on = None

UPDATE_REFUSED = "audit_events is append-only: an event cannot be changed"
DELETE_REFUSED = "audit_events is append-only: events are removed only by flask audit purge"

# Newest first, by (created_at, id), alone and after each filter the viewer offers. Each
# replaces the single-column index of the same leading column.
OLD_INDEXES = {
    "ix_audit_events_created_at": ["created_at"],
    "ix_audit_events_event": ["event"],
    "ix_audit_events_actor_id": ["actor_id"],
    "ix_audit_events_subject_id": ["subject_id"],
}
NEW_INDEXES = {
    "ix_audit_events_created_at_id": ["created_at", "id"],
    "ix_audit_events_event_created_at": ["event", "created_at", "id"],
    "ix_audit_events_actor_id_created_at": ["actor_id", "created_at", "id"],
    "ix_audit_events_subject_id_created_at": ["subject_id", "created_at", "id"],
    "ix_audit_events_ip_created_at": ["ip", "created_at", "id"],
}

# Every column but the two user references must stay as it was; each reference may only be
# cleared, and only once its user is gone (what ON DELETE SET NULL does).
_SQLITE_SAME_EXCEPT_USERS = " AND ".join(
    f"NEW.{column} IS OLD.{column}"
    for column in ("id", "created_at", "event", "ip", "user_agent", "details")
)
SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    WHEN NOT (
        {_SQLITE_SAME_EXCEPT_USERS}
        AND (NEW.actor_id IS OLD.actor_id OR (NEW.actor_id IS NULL
             AND NOT EXISTS (SELECT 1 FROM users WHERE users.id = OLD.actor_id)))
        AND (NEW.subject_id IS OLD.subject_id OR (NEW.subject_id IS NULL
             AND NOT EXISTS (SELECT 1 FROM users WHERE users.id = OLD.subject_id)))
    )
    BEGIN SELECT RAISE(ABORT, '{UPDATE_REFUSED}'); END
    """,
    f"""
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    WHEN NOT EXISTS (
        SELECT 1 FROM audit_purge_permits WHERE OLD.created_at < audit_purge_permits.before
    )
    BEGIN SELECT RAISE(ABORT, '{DELETE_REFUSED}'); END
    """,
]

POSTGRESQL_FUNCTION = f"""
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    purge_before timestamptz;
BEGIN
    BEGIN
        -- NULL when never set in this session, '' once the transaction that set it ended.
        purge_before := NULLIF(current_setting('clinic_mfa.audit_purge', true), '')::timestamptz;
    EXCEPTION WHEN others THEN
        purge_before := NULL;  -- anything but a timestamp permits nothing
    END;
    IF TG_OP = 'DELETE' THEN
        IF OLD.created_at < purge_before THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION '{DELETE_REFUSED}';
    ELSIF TG_OP = 'TRUNCATE' THEN
        IF purge_before = 'infinity' THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION '{DELETE_REFUSED}';
    END IF;
    IF (to_jsonb(NEW) - 'actor_id' - 'subject_id') = (to_jsonb(OLD) - 'actor_id' - 'subject_id')
       AND (NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id OR (NEW.actor_id IS NULL
            AND NOT EXISTS (SELECT 1 FROM users WHERE users.id = OLD.actor_id)))
       AND (NEW.subject_id IS NOT DISTINCT FROM OLD.subject_id OR (NEW.subject_id IS NULL
            AND NOT EXISTS (SELECT 1 FROM users WHERE users.id = OLD.subject_id)))
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '{UPDATE_REFUSED}';
END
$$
"""
POSTGRESQL_TRIGGERS = [
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events"
    " FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events"
    " FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events"
    " FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()",
]
TRIGGER_NAMES = ["audit_events_no_update", "audit_events_no_delete", "audit_events_no_truncate"]


def upgrade():
    for name in OLD_INDEXES:
        op.drop_index(name, table_name="audit_events")
    for name, columns in NEW_INDEXES.items():
        op.create_index(name, "audit_events", columns)
    op.create_table(
        "audit_purge_permits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("before", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_purge_permits")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        for statement in POSTGRESQL_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade():
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON audit_events" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    op.drop_table("audit_purge_permits")
    for name in NEW_INDEXES:
        op.drop_index(name, table_name="audit_events")
    for name, columns in OLD_INDEXES.items():
        op.create_index(name, "audit_events", columns)
