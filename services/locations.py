"""Prompt only once from the same location (DEV-3, seed 003).

When the rule applies to a person (services/requirement.py: on for the clinic or for them,
never for Administrators), a second factor passed from an address lets them skip the prompt
from that address for the set number of days. The address is ``client_ip()``: the socket's, or
what the configured trusted proxies report, so a forged X-Forwarded-For changes nothing.
A password change, a factor change and signing out everywhere forget every address.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from models import TrustedLocation, User, db
from models.types import utcnow
from services import upsert
from services.client import client_ip


def trust_here(user: User, days: int) -> None:
    """Remember this request's address for ``user`` for ``days`` days from now."""
    ip = client_ip()
    if days <= 0 or not ip:
        return
    now = utcnow()
    until = now + timedelta(days=days)
    stmt = upsert.insert(TrustedLocation).values(
        user_id=user.id, ip=ip, created_at=now, expires_at=until
    )
    # Two sign-ins from one address at once must not fail on the unique (user, address).
    db.session.execute(
        stmt.on_conflict_do_update(
            index_elements=[TrustedLocation.user_id, TrustedLocation.ip],
            set_={"created_at": now, "expires_at": until},
        )
    )


def recognised(user: User, days: int) -> bool:
    """True if ``user`` passed a second factor from this address within ``days`` days (and
    its own expiry: a shortened setting applies to addresses trusted before the change)."""
    ip = client_ip()
    if days <= 0 or not ip:
        return False
    now = utcnow()
    created = db.session.scalar(
        select(TrustedLocation.created_at).where(
            TrustedLocation.user_id == user.id,
            TrustedLocation.ip == ip,
            TrustedLocation.expires_at > now,
        )
    )
    return created is not None and now < created + timedelta(days=days)


def forget_all(user_id: int) -> int:
    result = db.session.execute(delete(TrustedLocation).where(TrustedLocation.user_id == user_id))
    return result.rowcount or 0


def forget_everyone() -> int:
    """The rule was switched off: no address is trusted any longer, for anyone."""
    return db.session.execute(delete(TrustedLocation)).rowcount or 0
