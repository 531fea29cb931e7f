"""The audit log as CSV (ADM-9): streamed in keyset batches with flat memory, readable back
by Python's csv module, cells a spreadsheet would run neutralised, the filters honoured, the
export itself recorded, and `flask audit export` writing the same file."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from bench.audit_events import bulk_insert, synthetic
from models import AuditEvent, db
from services.audit_log import CSV_HEADER
from tests import test_audit_log
from tests.test_audit_log import ADMIN, add_events

T = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# The signed-in Administrator of the audit log's tests.
admin_account, admin = test_audit_log.admin_account, test_audit_log.admin


def read(body: bytes) -> list[list[str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")  # so a spreadsheet reads the accents as UTF-8
    return list(csv.reader(io.StringIO(text[1:], newline="")))


def test_a_hundred_thousand_rows_stream_in_flat_memory(app, client, admin):
    """The export is a generator over batches read by keyset: what it allocates while
    writing 100,000 rows (about 26 MB of CSV), measured by tracemalloc from the request to
    the last chunk (after a small export has compiled the SQL and filled the caches), is one
    batch's worth, and no more at the end than after the first ten batches."""
    with app.app_context():
        inserted = bulk_insert(db.engine, synthetic(100_000, [admin], T))
    assert inserted == 100_000
    client.get("/admin/audit.csv", query_string={"event": "keys.rotated"}).get_data()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        response = client.get("/admin/audit.csv", buffered=False)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        disposition = response.headers["Content-Disposition"]
        assert disposition.startswith('attachment; filename="audit-log-')
        assert response.is_streamed
        size = lines = count = 0
        for chunk in response.iter_encoded():
            size += len(chunk)
            lines += chunk.count(b"\r\n")
            count += 1
            if count == 10:
                early_peak = tracemalloc.get_traced_memory()[1] - start
                tracemalloc.reset_peak()
        late_peak = tracemalloc.get_traced_memory()[1] - start
        response.close()
    finally:
        tracemalloc.stop()
    # header, 100,000 events, the admin's sign-in (2) and the two exports' own records
    assert lines == 1 + 100_000 + 4
    assert size > 20_000_000
    assert count > 90  # written batch by batch, not at the end
    # About 3 MB each time here, for 26 MB written; holding the rows would take over 100 MB.
    assert early_peak < 5_000_000, f"{early_peak / 1e6:.1f} MB before the tenth batch"
    assert late_peak < early_peak + 1_000_000, (early_peak, late_peak)


def test_the_csv_round_trips_and_formula_cells_are_neutralised(app, client, admin, make_user):
    app.config["MFA_TIME_ZONE"] = "Australia/Sydney"
    dash = make_user("-dash@clinic.example")
    tricky = {"note": 'He said "hi", then\nleft; a,b', "city": "Zürich", "formula": "=1+1"}
    ids = add_events(
        app,
        {
            "created_at": T,
            "event": "admin.user_rules_changed",
            "actor_id": admin,
            "subject_id": dash,
            "ip": "203.0.113.7",
            "user_agent": '=HYPERLINK("http://evil.example","click")',
            "details": tricky,
        },
        {"created_at": T + timedelta(seconds=1), "user_agent": "+SUM(A1)"},
        {"created_at": T + timedelta(seconds=2), "user_agent": "@cmd"},
        {"created_at": T + timedelta(seconds=3), "user_agent": "\t=1+2"},
        {"created_at": T + timedelta(seconds=4), "user_agent": "\r=3+4"},
        {"created_at": T + timedelta(seconds=5), "user_agent": "-5+5", "ip": "2001:db8::1"},
    )
    rows = read(client.get("/admin/audit.csv", query_string={"to": "2026-03-10"}).get_data())
    assert rows[0] == list(CSV_HEADER)
    by_id = {int(row[0]): dict(zip(CSV_HEADER, row, strict=True)) for row in rows[1:]}
    assert list(by_id) == list(reversed(ids))  # newest first, only the filter's day
    first = by_id[ids[0]]
    assert first == {
        "id": str(ids[0]),
        "time_utc": "2026-03-10T09:00:00+00:00",
        "time_clinic": "2026-03-10T20:00:00+11:00",
        "event": "admin.user_rules_changed",
        "description": "A person's own rule changed",
        "actor": ADMIN,
        "subject": "'-dash@clinic.example",
        "ip": "203.0.113.7",
        "browser": "Browser on unknown system",
        "user_agent": '\'=HYPERLINK("http://evil.example","click")',
        "details": first["details"],
    }
    assert json.loads(first["details"]) == tricky
    agents = [by_id[i]["user_agent"] for i in ids[1:]]
    assert agents == ["'+SUM(A1)", "'@cmd", "'\t=1+2", "'\r=3+4", "'-5+5"]
    assert by_id[ids[5]]["ip"] == "2001:db8::1"
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_START), cell


def test_the_export_follows_the_filters_and_is_recorded(app, client, admin):
    ids = add_events(
        app,
        {"created_at": T, "event": "mfa.code_failed", "ip": "198.51.100.9"},
        {"created_at": T, "event": "mfa.code_failed", "ip": "198.51.100.1"},
        {"created_at": T, "event": "sign_out", "ip": "198.51.100.9"},
    )
    query = {"event": "mfa.code_failed", "ip": "198.51.100.9", "from": "2026-01-01"}
    rows = read(client.get("/admin/audit.csv", query_string=query).get_data())
    assert [int(row[0]) for row in rows[1:]] == [ids[0]]
    with app.app_context():
        exported = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.event == "audit.exported")
        ).all()
    assert [(e.actor_id, e.details) for e in exported] == [
        (
            admin,
            {
                "filters": {"event": "mfa.code_failed", "ip": "198.51.100.9", "from": "2026-01-01"},
                "via": "web",
            },
        )
    ]
    bad = client.get("/admin/audit.csv", query_string={"ip": "not an address"})
    assert bad.status_code == 400
    assert "Enter one IP address, for example 203.0.113.7 or 2001:db8::1." in bad.get_data(
        as_text=True
    )


def test_the_command_line_writes_the_same_file(app, client, admin, runner):
    """`flask audit export --since DATE` and the page's download share one writer: the same
    rows, cell for cell (each export's own record aside)."""
    add_events(
        app,
        {"created_at": T - timedelta(days=40), "event": "sign_out"},
        {"created_at": T, "event": "mfa.code_failed", "user_agent": "=cmd", "details": {"a": 1}},
    )
    web = read(client.get("/admin/audit.csv", query_string={"from": "2026-02-01"}).get_data())
    result = runner.invoke(args=["audit", "export", "--since", "2026-02-01"])
    assert result.exit_code == 0, result.output
    cli = read(result.stdout_bytes)

    def without_exports(rows: list[list[str]]) -> list[list[str]]:
        return [row for row in rows if row[3] != "audit.exported"]

    assert without_exports(cli) == without_exports(web)
    assert len(without_exports(web)) == 1 + 3  # header, the code, the admin's sign-in (2)
    with app.app_context():
        vias = db.session.scalars(
            sa.select(AuditEvent.details["via"].as_string())
            .where(AuditEvent.event == "audit.exported")
            .order_by(AuditEvent.id)
        ).all()
    assert vias == ["web", "cli"]
