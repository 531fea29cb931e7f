"""The users as the API reports them (ADM-10): a page at a time, each with their two-step
standing under the effective policy (services/readiness.py's rule, the one the admin pages
count with), the methods they can use now and their last sign-in.

Keyset pagination on the id: a page is ``id > after`` in id order, so a report that pages
through while people are added or removed neither skips nor repeats anyone, and page 100
costs what page 1 does. Three queries a page, whatever its size: the users (with their role
and last sign-in), their factors, the clinic's policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import undefer

from models import User, db
from services import factor_kinds, policy, readiness

DEFAULT_PAGE = 50
MAX_PAGE = 200


@dataclass(frozen=True)
class Entry:
    user: User
    standing: str  # readiness.ENROLLED, NOT_ENROLLED or EXEMPT
    methods: tuple[str, ...]  # usable now, in the registry's order (strongest first)
    last_sign_in: datetime | None


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    next_after: int | None  # the ``after`` of the next page; None on the last one


def page(after: int = 0, size: int = DEFAULT_PAGE) -> Page:
    """Up to ``size`` users with an id above ``after``."""
    clinic = policy.current()
    users = db.session.scalars(
        select(User)
        .options(undefer(User.last_sign_in_at))
        .where(User.id > after)
        .order_by(User.id)
        .limit(size + 1)
    ).all()
    more = len(users) > size
    users = users[:size]
    order = [kind.name for kind in factor_kinds.enrollable()]
    entries = []
    for person in readiness.people_of(users):
        usable = person.usable(clinic)
        entries.append(
            Entry(
                user=person.user,
                standing=readiness.standing(person, clinic),
                methods=tuple(kind for kind in order if kind in usable),
                last_sign_in=person.user.last_sign_in_at,
            )
        )
    return Page(entries, users[-1].id if more else None)
