"""The one-time bypass (ADM-6, seed 002): for someone who lost their phone, an admin lets
them sign in once without a second factor, straight into the setup wizard.

Granting it clears everything that stood for their second factor (factors, recovery codes,
setups in progress, remembered devices, trusted addresses), ends their sessions and records
until when it holds (1 to 24 hours, 8 by default). Their override is left as it was (seed
002: "Do not change the Two-factor auth dropdown"). The sign-in that uses it spends it with a
conditional UPDATE, so of any number of racing sign-ins exactly one gets through this way;
``signin.decide`` is where it changes what follows the password.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, update
from sqlalchemy.orm.attributes import set_committed_value

from models import User, db
from models.types import utcnow
from services import audit, factors, sessions
from services.users import UserInputError

DEFAULT_HOURS = 8
MAX_HOURS = 24


def grant(user: User, hours: int, *, actor: User | None) -> datetime:
    """Grant it for ``hours``; returns until when. The caller audits, commits and emails.
    UserInputError when the hours are out of range or the person cannot sign in anyway."""
    if not 1 <= hours <= MAX_HOURS:
        raise UserInputError(f"Choose from 1 to {MAX_HOURS} hours.")
    if not user.active:
        raise UserInputError(f"{user.display_name}'s account is switched off: reactivate it first.")
    if user.invited:
        raise UserInputError(
            f"{user.display_name} has not chosen a password yet: resend the invitation instead."
        )
    until = utcnow() + timedelta(hours=hours)
    factors.reset_all(user.id)
    sessions.end_all_for(user.id, reason="bypass_granted")
    user.mfa_bypass_until = until
    user.mfa_bypass_by_id = actor.id if actor is not None else None
    return until


def pending(user: User, now: datetime | None = None) -> bool:
    """Granted and neither used nor expired."""
    return user.mfa_bypass_until is not None and user.mfa_bypass_until > (now or utcnow())


def pending_sql(now: datetime) -> ColumnElement[bool]:
    """``pending`` in SQL, for the users list's filter."""
    return User.mfa_bypass_until > now


def spend(user: User) -> bool:
    """Use the grant up for this sign-in. False: a racing sign-in spent it first, or it has
    just expired; the caller then decides as if there had been none."""
    won = (
        db.session.execute(
            update(User)
            .where(User.id == user.id, User.mfa_bypass_until > utcnow())
            .values(mfa_bypass_until=None, mfa_bypass_by_id=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )
    # Spent either way, by this sign-in or another one.
    set_committed_value(user, "mfa_bypass_until", None)
    set_committed_value(user, "mfa_bypass_by_id", None)
    if won:
        audit.record("mfa.bypass_used", actor=user, subject=user)
    return won


def revoke(user: User) -> None:
    """Withdraw a grant not yet used (the person's account was switched off)."""
    user.mfa_bypass_until = None
    user.mfa_bypass_by_id = None
