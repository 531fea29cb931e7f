"""The users list (ADM-7): search, filters, sort and one page of people with their standing.

Everything that picks and orders people runs in the database: a status filter uses the SQL
twins of the rules (``readiness.standing_is``, ``throttle.email_locked_sql``,
``wrong_codes.locked_sql``, ``bypass.pending_sql``), so a page costs the same handful of
statements whether it shows 10 people or 200, among 50 or 50,000 (PERF-2):

1. how many match (for the page count),
2. the page's people with their role, last sign-in and password lock,
3. the kinds of factor those people have (``readiness.people_of``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import ColumnElement, Select, and_, func, or_, select, true
from sqlalchemy.orm import contains_eager, undefer

from models import ClinicPolicy, Role, User, db
from services import bypass, factor_kinds, readiness, throttle, wrong_codes
from services.readiness import ENROLLED, EXEMPT, NOT_ENROLLED

# Filters by status. Set up / not set up / exempt are about active people, as on the
# readiness counts; the others are their own conditions.
LOCKED = "locked"
BYPASS = "bypass"
INVITED = "invited"
DEACTIVATED = "deactivated"
STATUS_LABELS = {
    ENROLLED: "Set up",
    NOT_ENROLLED: "Not set up",
    EXEMPT: "Exempt",
    LOCKED: "Locked",
    BYPASS: "Bypass pending",
    INVITED: "Invited, no password yet",
    DEACTIVATED: "Deactivated",
}
SORT_LABELS = {
    "name": "Name",
    "email": "Email",
    "role": "Role",
    "last_sign_in": "Last sign-in",
}
PAGE_SIZES = (25, 50, 100, 200)
MAX_PAGE = 100_000  # far beyond any clinic; keeps OFFSET a small number


@dataclass(frozen=True)
class Query:
    """What the admin asked for, already validated (the view's form checks each value)."""

    search: str = ""
    role_id: int | None = None
    status: str = ""
    sort: str = "name"
    descending: bool = False
    page: int = 1
    per_page: int = PAGE_SIZES[0]


@dataclass(frozen=True)
class Row:
    user: User
    standing: str  # readiness standing (enrolled, not enrolled, exempt)
    methods: tuple[str, ...]  # labels of the usable factors, default first
    password_locked: bool
    factor_locked: bool
    bypass_until: datetime | None  # a grant not used yet and not expired

    @property
    def locked(self) -> bool:
        return self.password_locked or self.factor_locked


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    total: int
    query: Query

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.query.per_page))

    @property
    def number(self) -> int:
        """The page shown: the one asked for, or the last one if it asked for more."""
        return min(self.query.page, self.pages)

    @property
    def first_shown(self) -> int:
        return (self.number - 1) * self.query.per_page + 1 if self.rows else 0

    @property
    def last_shown(self) -> int:
        return self.first_shown + len(self.rows) - 1 if self.rows else 0


def status_sql(status: str, clinic: ClinicPolicy, now: datetime) -> ColumnElement[bool]:
    """The SQL condition for one of STATUS_LABELS (or none for "")."""
    active = User.active.is_(True)
    if status in (ENROLLED, NOT_ENROLLED, EXEMPT):
        return and_(active, User.password_hash.is_not(None), readiness.standing_is(status, clinic))
    if status == LOCKED:
        return or_(
            throttle.email_locked_sql(User.email, now),
            wrong_codes.locked_sql(
                User, now=now, hard=current_app.config["MFA_WRONG_CODES_HARD_LOCK"]
            ),
        )
    if status == BYPASS:
        return and_(active, bypass.pending_sql(now))
    if status == INVITED:
        return and_(active, User.password_hash.is_(None))
    if status == DEACTIVATED:
        return User.active.is_(False)
    return true()


def _filtered(query: Query, clinic: ClinicPolicy, now: datetime) -> list[ColumnElement[bool]]:
    conditions = [status_sql(query.status, clinic, now)]
    words = query.search.strip()
    if words:
        conditions.append(
            or_(
                User.full_name.icontains(words, autoescape=True),
                User.email.icontains(words, autoescape=True),
            )
        )
    if query.role_id is not None:
        conditions.append(User.role_id == query.role_id)
    return conditions


def _ordered(statement: Select, query: Query) -> Select:
    """Sorted as asked, then by name and id so that pages never overlap or skip anyone."""
    name = func.lower(func.coalesce(func.nullif(User.full_name, ""), User.email))
    key = {
        "name": name,
        "email": User.email,
        "role": func.lower(Role.name),
        "last_sign_in": User.last_sign_in_at,
    }[query.sort]
    first = key.desc() if query.descending else key.asc()
    if query.sort == "last_sign_in":
        # Never signed in: after everyone who has, either way round.
        first = first.nulls_last()
    return statement.order_by(first, name, User.id)


def find(query: Query, clinic: ClinicPolicy, now: datetime) -> Page:
    """One page of the people matching ``query``, in three statements."""
    conditions = _filtered(query, clinic, now)
    total = db.session.scalar(select(func.count(User.id)).where(*conditions)) or 0
    pages = max(1, math.ceil(total / query.per_page))
    page = min(query.page, pages)
    password_locked = throttle.email_locked_sql(User.email, now).label("password_locked")
    statement = (
        select(User, password_locked)
        .join(User.role)
        .options(contains_eager(User.role), undefer(User.last_sign_in_at))
        .where(*conditions)
    )
    found = db.session.execute(
        _ordered(statement, query).limit(query.per_page).offset((page - 1) * query.per_page)
    ).all()
    users = [user for user, _ in found]
    locked = {user.id: bool(flag) for user, flag in found}
    rows = [
        _row(person, clinic, locked[person.user.id], now) for person in readiness.people_of(users)
    ]
    return Page(rows=rows, total=total, query=query)


def _row(person: readiness.Person, clinic: ClinicPolicy, password_locked: bool, now) -> Row:
    user = person.user
    usable = person.usable(clinic)
    labels = tuple(kind.label for kind in factor_kinds.enrollable() if kind.name in usable)
    return Row(
        user=user,
        standing=readiness.standing(person, clinic),
        methods=labels,
        password_locked=password_locked,
        factor_locked=wrong_codes.lock_of(user, now) is not None,
        bypass_until=user.mfa_bypass_until if bypass.pending(user, now) else None,
    )


def roles() -> list[Role]:
    return list(db.session.scalars(select(Role).order_by(Role.id)))
