"""Reading the audit log (ADM-9): the words for each event, the filters, newest-first keyset
pages, and the CSV export that the web page and `flask audit export` share.

Pages never use OFFSET: a cursor names the last row seen by its (created_at, id), and the
next page is the rows strictly beyond it in that order. The indexes of models/audit.py make
each page a short index range whatever the table's size, and the export walks the same way
in batches, so its memory stays flat however many rows it writes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Row, Select, literal, select, tuple_, union
from sqlalchemy.orm import aliased

from models import AuditEvent, User, db
from models.types import UTCDateTime
from services import localtime
from services.devices import label_for
from services.users import by_email

PAGE_SIZE = 50
LAST_YEAR = 2999  # no event, filter or cursor reaches beyond it
EXPORT_BATCH = 1000

# What each event means, in the words an administrator reads. An event missing here is shown
# by its raw name; tests/test_audit_log.py checks that every event the code records has one.
EVENT_LABELS: dict[str, str] = {
    "sign_in.password_ok": "Password accepted",
    "sign_in.password_failed": "Wrong password or unknown email",
    "sign_in.refused_inactive": "Sign-in refused: account switched off",
    "sign_in.throttled": "Sign-in slowed down after failures",
    "sign_in.setup_now_required": "Sent to set up two-step sign-in",
    "sign_in.succeeded": "Signed in",
    "sign_out": "Signed out",
    "reauth.succeeded": "Password entered again",
    "reauth.failed": "Wrong password when entering it again",
    "mfa.code_sent": "Sign-in code sent",
    "mfa.code_failed": "Wrong code",
    "mfa.code_delivery_failed": "Sign-in code could not be sent",
    "mfa.locked": "Second factor locked after wrong codes",
    "mfa.address_blocked": "Address blocked after wrong codes",
    "mfa.method_switched": "Switched to another way to get a code",
    "mfa.method_refused": "Refused a way to get a code that is not allowed",
    "mfa.setup_started": "Began setting up two-step sign-in",
    "mfa.setup_code_failed": "Wrong code while setting up",
    "mfa.setup_declined": "Chose not to use two-step sign-in",
    "mfa.setup_postponed": "Skipped setup until the go-live date",
    "mfa.factor_added": "Second factor added",
    "mfa.factor_replaced": "Second factor replaced",
    "mfa.reset": "Two-step sign-in reset",
    "device.remembered": "Device remembered",
    "password.changed": "Password changed",
    "password_reset.requested": "Password reset link sent",
    "password_reset.refused": "Password reset refused",
    "password_reset.throttled": "Password reset slowed down",
    "password_reset.completed": "Password reset with an emailed link",
    "user.created": "User created",
    "user.mobile_changed": "Mobile number changed",
    "user.unlocked": "Sign-in unlocked",
    "policy.changed": "Clinic policy changed",
    "admin.policy_changed": "Security settings changed",
    "admin.role_policy_changed": "A role's rule changed",
    "admin.user_rules_changed": "A person's own rule changed",
    "rollout.notice_sent": "Rollout notice emailed",
    "mail.failed": "Email could not be sent",
    "keys.rotated": "Encryption keys rotated",
    "audit.exported": "Audit log exported",
    "audit.purged": "Old audit events purged",
    "mfa.code_target_changed": "Where codes go changed",
    "recovery.codes_replaced": "New recovery codes made",
    "sign_in.refused_api_user": "Sign-in refused: an API user",
    "admin.api_user_created": "API user created",
    "admin.api_token_created": "API token created",
    "admin.api_token_revoked": "API token revoked",
    "admin.user_invited": "Person added and invited",
    "admin.invitation_resent": "Invitation sent again",
    "invitation.accepted": "Invitation accepted: password chosen",
    "admin.role_changed": "Role changed",
    "admin.user_deactivated": "Account switched off",
    "admin.user_reactivated": "Account switched on again",
    "admin.devices_forgotten": "Remembered devices forgotten by an administrator",
    "admin.signed_out_everywhere": "Signed out everywhere by an administrator",
    "admin.bypass_granted": "One-time bypass granted",
    "mfa.bypass_used": "Signed in once without a code (bypass)",
}
# What a well-formed event name looks like; a filter for any other is refused.
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")

CSV_HEADER = (
    "id",
    "time_utc",
    "time_clinic",
    "event",
    "description",
    "actor",
    "subject",
    "ip",
    "browser",
    "user_agent",
    "details",
)
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def event_label(name: str) -> str:
    return EVENT_LABELS.get(name, name)


def event_choices(also: str = "") -> list[tuple[str, str]]:
    """(name, label) of every known event by label, plus ``also`` (a well-formed name asked
    for that is not in the table: events of newer code, still filterable)."""
    names = set(EVENT_LABELS)
    if also and also not in names:
        names.add(also)
    return sorted(((n, event_label(n)) for n in names), key=lambda c: c[1].lower())


@lru_cache(maxsize=512)
def browser(agent: str) -> str:
    """ "Firefox on Windows", "Command line", or "" when nothing was sent."""
    if agent == "cli":
        return "Command line"
    return label_for(agent) if agent else ""


# --- cursors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """A place in newest-first order: an event's (created_at, id)."""

    created_at: datetime
    id: int

    _TEXT = re.compile(r"^(\d{1,17})-(\d{1,18})$")

    def text(self) -> str:
        """ "1795424400123456-1234": microseconds since 1970 (UTC), a dash, the id."""
        delta = self.created_at - datetime(1970, 1, 1, tzinfo=UTC)
        return f"{delta // timedelta(microseconds=1)}-{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """The cursor a link carried; ValueError if it is not one."""
        match = cls._TEXT.match(text)
        if not match:
            raise ValueError(text)
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(match.group(1)))
        if moment.year > LAST_YEAR:
            raise ValueError(text)
        return cls(moment, int(match.group(2)))


# --- filters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the admin asked for; empty values do not filter. Days are the clinic's."""

    email: str = ""
    event: str = ""
    from_day: date | None = None
    to_day: date | None = None
    ip: str = ""

    def args(self) -> dict[str, str]:
        """The filters as query arguments, for links that keep them (pages, CSV)."""
        values = {
            "user": self.email,
            "event": self.event,
            "from": self.from_day.isoformat() if self.from_day else "",
            "to": self.to_day.isoformat() if self.to_day else "",
            "ip": self.ip,
        }
        return {key: value for key, value in values.items() if value}

    @property
    def any(self) -> bool:
        return bool(self.args())


@dataclass(frozen=True)
class _Where:
    """The filters as SQL: the user's id (None: anyone) and the other conditions."""

    user_id: int | None
    conditions: list[Any]
    nobody: bool = False  # an email that belongs to no user: nothing can match


def _where(filters: Filters) -> _Where:
    conditions: list[Any] = []
    if filters.event:
        conditions.append(AuditEvent.event == filters.event)
    if filters.from_day:
        conditions.append(AuditEvent.created_at >= localtime.start_of(filters.from_day))
    if filters.to_day:
        next_day = filters.to_day + timedelta(days=1)
        conditions.append(AuditEvent.created_at < localtime.start_of(next_day))
    if filters.ip:
        conditions.append(AuditEvent.ip == filters.ip)
    if not filters.email:
        return _Where(None, conditions)
    user = by_email(filters.email)
    if user is None:
        return _Where(None, conditions, nobody=True)
    return _Where(user.id, conditions)


def _keys(where: _Where, cursor: Cursor | None, newest_first: bool, limit: int) -> Select:
    """(id, created_at) of up to ``limit`` matching events beyond ``cursor``, in order.

    For one user (as actor or as subject) the two index ranges are read apart, each only as
    far as ``limit``, and merged: an OR would make the database gather and sort every event
    of that user before it could return the first page.
    """
    order = (
        (AuditEvent.created_at.desc(), AuditEvent.id.desc())
        if newest_first
        else (AuditEvent.created_at.asc(), AuditEvent.id.asc())
    )
    conditions = list(where.conditions)
    if cursor is not None:
        position = tuple_(AuditEvent.created_at, AuditEvent.id)
        beyond = tuple_(literal(cursor.created_at, UTCDateTime()), literal(cursor.id))
        conditions.append(position < beyond if newest_first else position > beyond)
    base = select(AuditEvent.id, AuditEvent.created_at).order_by(*order).limit(limit)
    if where.user_id is None:
        return base.where(*conditions)
    branches = [
        select(branch)
        for branch in (
            base.where(column == where.user_id, *conditions).subquery()
            for column in (AuditEvent.actor_id, AuditEvent.subject_id)
        )
    ]
    merged = union(*branches).subquery()
    ordered = (
        (merged.c.created_at.desc(), merged.c.id.desc())
        if newest_first
        else (merged.c.created_at.asc(), merged.c.id.asc())
    )
    return select(merged.c.id, merged.c.created_at).order_by(*ordered).limit(limit)


_actor = aliased(User, name="actor")
_subject = aliased(User, name="subject")


def _rows(keys: Select, newest_first: bool = True) -> Sequence[Row[Any]]:
    """The events named by ``keys`` with their people's email addresses, in one statement."""
    chosen = keys.subquery()
    order = (chosen.c.created_at.desc(), chosen.c.id.desc())
    if not newest_first:
        order = (chosen.c.created_at.asc(), chosen.c.id.asc())
    query = (
        select(
            AuditEvent.id,
            AuditEvent.created_at,
            AuditEvent.event,
            AuditEvent.actor_id,
            _actor.email.label("actor_email"),
            AuditEvent.subject_id,
            _subject.email.label("subject_email"),
            AuditEvent.ip,
            AuditEvent.user_agent,
            AuditEvent.details,
        )
        .join(chosen, chosen.c.id == AuditEvent.id)
        .outerjoin(_actor, _actor.id == AuditEvent.actor_id)
        .outerjoin(_subject, _subject.id == AuditEvent.subject_id)
        .order_by(*order)
    )
    # Core, not the ORM session: plain rows, none of the ORM's bookkeeping per row.
    return db.session.connection().execute(query).all()


# --- what a page shows --------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    """One event as the viewer and the CSV show it."""

    id: int
    created_at: datetime
    event: str
    label: str
    actor_id: int | None
    actor: str  # email, or "" (the command line, nobody signed in, a deleted user)
    subject_id: int | None
    subject: str
    ip: str
    browser: str
    user_agent: str
    details: dict[str, Any]

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.created_at, self.id)

    def described(self) -> list[tuple[str, str]]:
        return describe(self.details)


def _entry(row: Row[Any]) -> Entry:
    details = row.details if isinstance(row.details, dict) else {"value": row.details}
    return Entry(
        id=row.id,
        created_at=row.created_at,
        event=row.event,
        label=event_label(row.event),
        actor_id=row.actor_id,
        actor=row.actor_email or "",
        subject_id=row.subject_id,
        subject=row.subject_email or "",
        ip=row.ip,
        browser=browser(row.user_agent),
        user_agent=row.user_agent,
        details=details,
    )


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    older: Cursor | None  # link "Older" with before=older
    newer: Cursor | None  # link "Newer" with after=newer
    unknown_email: bool = False


def page(
    filters: Filters,
    *,
    before: Cursor | None = None,
    after: Cursor | None = None,
    size: int = PAGE_SIZE,
) -> Page:
    """Up to ``size`` matching events, newest first: the newest of all, those just older than
    ``before``, or those just newer than ``after``. A statement for the user's email (if
    filtered), one for the rows, and one to see whether a page lies on the other side."""
    where = _where(filters)
    if where.nobody:
        return Page([], None, None, unknown_email=True)
    if after is not None:
        rows = _rows(_keys(where, after, False, size + 1), newest_first=False)
        entries = [_entry(r) for r in rows[:size]]
        entries.reverse()
        if len(rows) < size:
            # Back at the newest events: show the newest page whole.
            return page(filters, size=size)
        more_newer = len(rows) > size
        older = entries[-1].cursor if entries and _exists(where, entries[-1].cursor, True) else None
        return Page(entries, older, entries[0].cursor if more_newer else None)
    rows = _rows(_keys(where, before, True, size + 1))
    entries = [_entry(r) for r in rows[:size]]
    older = entries[-1].cursor if len(rows) > size else None
    newer = None
    if before is not None:
        edge = entries[0].cursor if entries else before
        newer = edge if _exists(where, edge, False) else None
    return Page(entries, older, newer)


def _exists(where: _Where, cursor: Cursor, newest_first: bool) -> bool:
    return (
        db.session.connection().execute(_keys(where, cursor, newest_first, 1)).first() is not None
    )


def describe(details: dict[str, Any]) -> list[tuple[str, str]]:
    """The details as (what, value) lines a person reads: a before/after pair becomes one
    line per setting changed ("mode: off → required"). Plain text: the page escapes it."""
    lines: list[tuple[str, str]] = []
    before, after = details.get("before"), details.get("after")
    paired = isinstance(before, dict) and isinstance(after, dict)
    if paired:
        for key in after:
            lines.append((_words(key), f"{_text(before.get(key))} → {_text(after[key])}"))
    for key, value in details.items():
        if paired and key in ("before", "after"):
            continue
        lines.append((_words(key), _text(value)))
    return lines


def _words(key: str) -> str:
    return str(key).replace("_", " ")


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{_words(k)}: {_text(v)}" for k, v in value.items()) or "none"
    return str(value)


# --- CSV ------------------------------------------------------------------------------------------


def entries(filters: Filters, batch: int = EXPORT_BATCH) -> Iterator[Entry]:
    """Every matching event, newest first, read ``batch`` rows at a time by keyset: the
    memory held is one batch, whatever the number of rows."""
    where = _where(filters)
    if where.nobody:
        return
    cursor: Cursor | None = None
    while True:
        rows = _rows(_keys(where, cursor, True, batch))
        for row in rows:
            yield _entry(row)
        if len(rows) < batch:
            return
        cursor = Cursor(rows[-1].created_at, rows[-1].id)


def safe_cell(value: str) -> str:
    """A cell a spreadsheet will not run: one that looks like a formula gets a leading
    apostrophe (OWASP's advice for CSV injection)."""
    return "'" + value if value.startswith(FORMULA_START) else value


def csv_row(entry: Entry) -> list[str]:
    moment = entry.created_at
    cells = [
        str(entry.id),
        moment.astimezone(UTC).isoformat(),
        localtime.local(moment).isoformat(),
        entry.event,
        entry.label,
        entry.actor,
        entry.subject,
        entry.ip,
        entry.browser,
        entry.user_agent,
        json.dumps(entry.details, ensure_ascii=False, sort_keys=True, default=str),
    ]
    return [safe_cell(cell) for cell in cells]


def csv_chunks(filters: Filters, batch: int = EXPORT_BATCH) -> Iterator[str]:
    """The CSV text in pieces of about ``batch`` rows: UTF-8 with a byte-order mark (so a
    spreadsheet reads accents right), CRLF line ends, every cell quoted where needed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow(CSV_HEADER)
    for written, entry in enumerate(entries(filters, batch), 1):
        writer.writerow(csv_row(entry))
        if written % batch == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def export_name() -> str:
    return f"audit-log-{localtime.today().isoformat()}.csv"
