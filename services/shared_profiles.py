"""Profiles that look shared (ADM-8, seed 001: "individual profiles should be set up ASAP"),
read from the sign-in history in ``user_sessions``, with the evidence an admin needs to ask
the right people.

A profile looks shared when, within the last ``WINDOW``:

- it signed in from ``DEVICES`` or more distinct devices, a device being a browser label
  ("Chrome on Windows") at an IP address; or
- two of its sessions were alive at the same time from different addresses.

A session is alive from its sign-in until the first of: its end, ``idle timeout`` after it
was last seen, ``absolute timeout`` after it began, now. Ended sessions are kept as history,
so both rules see the past week, not only who is signed in now.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from models import User, UserSession, db
from models.types import utcnow
from services.devices import label_for

WINDOW = timedelta(days=7)
DEVICES = 3
# Enough evidence to act on; the count says how much more there is.
MAX_OVERLAPS_SHOWN = 5


@dataclass(frozen=True)
class Seen:
    """One session as evidence: where from, and when it was alive."""

    label: str
    ip: str
    began: datetime
    ended: datetime


@dataclass(frozen=True)
class Device:
    label: str
    ip: str
    first: datetime
    last: datetime
    sign_ins: int


@dataclass(frozen=True)
class SharedProfile:
    user: User
    devices: list[Device]  # every device of the window, when there are DEVICES or more
    overlaps: list[tuple[Seen, Seen]]  # the first few pairs alive at once from two addresses
    overlap_count: int

    @property
    def many_devices(self) -> bool:
        return len(self.devices) >= DEVICES


def find(now: datetime | None = None) -> list[SharedProfile]:
    """Every active person whose profile looks shared, most devices first. One query."""
    now = now or utcnow()
    config = current_app.config
    idle, absolute = config["MFA_SESSION_IDLE_TIMEOUT"], config["MFA_SESSION_ABSOLUTE_TIMEOUT"]
    rows = db.session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(User.active.is_(True), UserSession.signed_in_at >= now - WINDOW)
        .order_by(UserSession.user_id, UserSession.signed_in_at)
    ).all()
    sessions: defaultdict[int, list[Seen]] = defaultdict(list)
    people: dict[int, User] = {}
    for row, user in rows:
        assert row.signed_in_at is not None  # the WHERE above
        ended = min(row.ended_at or now, row.last_seen_at + idle, row.created_at + absolute, now)
        sessions[user.id].append(
            Seen(label_for(row.user_agent), row.ip, row.signed_in_at, max(ended, row.signed_in_at))
        )
        people[user.id] = user
    found = []
    for user_id, seen in sessions.items():
        devices = _devices(seen)
        overlaps = _overlaps(seen)
        if len(devices) >= DEVICES or overlaps:
            found.append(
                SharedProfile(
                    people[user_id],
                    devices if len(devices) >= DEVICES else [],
                    overlaps[:MAX_OVERLAPS_SHOWN],
                    len(overlaps),
                )
            )
    found.sort(key=lambda p: (-len(p.devices), -p.overlap_count, p.user.email))
    return found


def _devices(seen: list[Seen]) -> list[Device]:
    """Distinct (browser label, IP), with first and last sign-in and how many."""
    grouped: dict[tuple[str, str], list[Seen]] = defaultdict(list)
    for s in seen:
        grouped[(s.label, s.ip)].append(s)
    devices = [
        Device(label, ip, min(s.began for s in group), max(s.began for s in group), len(group))
        for (label, ip), group in grouped.items()
    ]
    return sorted(devices, key=lambda d: d.first)


def _overlaps(seen: list[Seen]) -> list[tuple[Seen, Seen]]:
    """Pairs of sessions alive at the same moment from different addresses, in order of the
    second one's sign-in (``seen`` is ordered by sign-in)."""
    pairs = []
    for index, later in enumerate(seen):
        for earlier in seen[:index]:
            if earlier.ip != later.ip and earlier.ended > later.began:
                pairs.append((earlier, later))
    return pairs
