"""Rollout notices (ADM-3): an email some days before a role's go-live date to each person
who will then have to set up two-step sign-in and has not yet.

`flask rollout notify` runs this daily from cron. Which notice is due depends only on the
days left, so a run that was missed, or a person who joined the role late, still gets the
notice they are owed (late) and never one that no longer makes sense:

- with ``days_left`` to go (more than 0), the due notice is the smallest configured N with
  ``days_left <= N``; at 10 days left with (14, 1) that is the 14-day one, at 1 day the 1-day
  one; once the day has come, none;
- each (person, role, go-live date, N) is sent once; a moved date is a new go-live value, so
  it starts its own notices.

Whom it concerns is asked of services/requirement.py, like sign-in does: people whose
requirement comes from the role's date (an override either way takes them out) and who have
no factor the policy lets them use.

Sending once under concurrency: the ``rollout_notices`` row is claimed (INSERT ... ON CONFLICT
DO NOTHING) and committed before the mail server is contacted, then marked sent. Two runs at
once cannot both claim it; a failed send deletes the claim so the next run tries again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from flask import current_app
from sqlalchemy import delete, select, update

from models import ClinicPolicy, Role, RolloutNotice, User, db
from models.policy import MODE_REQUIRED
from models.types import utcnow
from services import audit, localtime, notify, policy, readiness, requirement, upsert
from services.links import external_url

# A claim whose run died between claiming and marking it sent (killed, server rebooted) may be
# taken over after this long. Far above the mail timeout, so a run still sending keeps its own.
STALE_CLAIM_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class Due:
    """One notice owed: to ``user`` about ``role`` going live on ``go_live``."""

    user: User
    role: Role
    go_live: date
    days_before: int  # which notice (the configured N), not the days actually left
    days_left: int


@dataclass(frozen=True)
class Outcome:
    sent: int = 0
    failed: int = 0  # mail server refused or down; the next run tries again


def parse_days(value: str | Iterable[int]) -> tuple[int, ...]:
    """ "14,1" (or an iterable of ints) as notice days, largest first; ValueError if any is
    not a whole number of at least 1, or none is given."""
    items = value.split(",") if isinstance(value, str) else list(value)
    days: set[int] = set()
    for item in items:
        try:
            number = int(str(item).strip())
        except ValueError:
            raise ValueError(f"{str(item).strip()!r} is not a whole number of days") from None
        if number < 1:
            raise ValueError(f"{number} is not a number of days before go-live (1 or more)")
        days.add(number)
    if not days:
        raise ValueError("give at least one number of days, e.g. 14,1")
    return tuple(sorted(days, reverse=True))


def notice_due(days_left: int, days: Iterable[int]) -> int | None:
    """Which notice is due with ``days_left`` to go: the smallest N not below it; None before
    the first notice and from the go-live day on."""
    if days_left <= 0:
        return None
    return min((n for n in days if days_left <= n), default=None)


def due(days: Iterable[int] | None = None) -> list[Due]:
    """Every notice owed today (the clinic's day) and not sent yet, by role and email; ``days``
    defaults to MFA_ROLLOUT_NOTICE_DAYS. Reads only: a dry run shows this list."""
    days = tuple(current_app.config["MFA_ROLLOUT_NOTICE_DAYS"] if days is None else days)
    today = localtime.today()
    clinic = policy.current()
    roles = db.session.scalars(
        select(Role)
        .where(Role.mfa_mode == MODE_REQUIRED, Role.mfa_required_from > today)
        .order_by(Role.name)
    )
    owed: list[Due] = []
    for role in roles:
        go_live = role.mfa_required_from
        assert go_live is not None  # the query asked for a date
        days_left = (go_live - today).days
        days_before = notice_due(days_left, days)
        if days_before is None:
            continue
        sent = set(
            db.session.scalars(
                select(RolloutNotice.user_id).where(
                    RolloutNotice.role_id == role.id,
                    RolloutNotice.go_live == go_live,
                    RolloutNotice.days_before == days_before,
                    RolloutNotice.sent_at.is_not(None),
                )
            )
        )
        users = db.session.scalars(
            select(User)
            .where(User.role_id == role.id, User.active.is_(True), User.is_person)
            .order_by(User.email)
        ).all()
        owed += [
            Due(person.user, role, go_live, days_before, days_left)
            for person in readiness.people_of(users)
            if person.user.id not in sent and _concerned(person, clinic, today, go_live)
        ]
    return owed


def _concerned(person: readiness.Person, clinic: ClinicPolicy, today: date, go_live: date) -> bool:
    """Their requirement waits for this very date (not exempt, not required already by an
    override), and they have no factor they could use on that day."""
    needs = requirement.of(person.user, clinic, today=today)
    return needs.required_from == go_live and not person.kinds & frozenset(needs.methods)


def send_due(days: Iterable[int] | None = None) -> Outcome:
    """Send today's notices (``days`` defaults to MFA_ROLLOUT_NOTICE_DAYS); safe to run twice
    at once. Commits as it goes, one notice at a time."""
    owed = due(days)
    db.session.commit()  # end the reading transaction before the first claim
    sent = failed = 0
    for notice in owed:
        claim = _claim(notice)
        if claim is None:
            continue  # another run has it, or sent it since the list was read
        if notify.rollout_notice(
            notice.user,
            role=notice.role.name,
            go_live=notice.go_live,
            days_left=notice.days_left,
            setup_url=external_url("mfa.setup"),
        ):
            db.session.execute(
                update(RolloutNotice).where(RolloutNotice.id == claim).values(sent_at=utcnow())
            )
            audit.record(
                "rollout.notice_sent",
                subject=notice.user,
                role=notice.role.name,
                go_live=notice.go_live.isoformat(),
                days_before=notice.days_before,
            )
            sent += 1
        else:
            # notify audited mail.failed; without the claim the next run tries again.
            db.session.execute(delete(RolloutNotice).where(RolloutNotice.id == claim))
            failed += 1
        db.session.commit()
    return Outcome(sent, failed)


def _claim(notice: Due) -> int | None:
    """The id of the notice row, claimed for this run and committed; None when another run
    holds a live claim or the notice was sent. On PostgreSQL a second INSERT of the same key
    waits for the first transaction, then does nothing."""
    now = utcnow()
    key = {
        "user_id": notice.user.id,
        "role_id": notice.role.id,
        "go_live": notice.go_live,
        "days_before": notice.days_before,
    }
    claimed = db.session.scalar(
        upsert.insert(RolloutNotice)
        .values(**key, claimed_at=now)
        .on_conflict_do_nothing(index_elements=list(key))
        .returning(RolloutNotice.id)
    )
    if claimed is None:
        # Take over only a claim never marked sent and old enough that its run has died; the
        # condition is re-checked under the row lock, so of two runs one takes it.
        claimed = db.session.scalar(
            update(RolloutNotice)
            .where(
                *(getattr(RolloutNotice, column) == value for column, value in key.items()),
                RolloutNotice.sent_at.is_(None),
                RolloutNotice.claimed_at < now - STALE_CLAIM_AFTER,
            )
            .values(claimed_at=now)
            .returning(RolloutNotice.id)
        )
    db.session.commit()
    return claimed
