"""An admin's changes to someone's account (ADM-7): their role, and switching the account
off and on. The rules that keep the clinic administrable live here, once:

- nobody removes their own Administrator role or switches off their own account (they would
  lock themselves out mid-change);
- the last active Administrator is never demoted or switched off.

The last-Administrator check is part of the UPDATE itself, so two admins demoting each other
at the same moment cannot both succeed: on PostgreSQL the active Administrators' rows are
locked first, so the second UPDATE sees the first one's result; SQLite runs one writer at a
time. Each change ends the person's sessions (AUTH-6). Callers audit, commit and email.

``access_of`` sums up what lets a person in or keeps them out, for their admin page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, exists, func, select, update
from sqlalchemy.orm import aliased

from models import RememberedDevice, Role, TrustedLocation, User, UserSession, db
from models.sessions import ENDED
from models.types import utcnow
from models.user import ADMINISTRATOR
from services import (
    bypass,
    devices,
    emailed_links,
    invitations,
    sessions,
    throttle,
    wrong_codes,
)
from services.policy import Change
from services.users import UserInputError

OWN_ROLE = "You cannot remove your own Administrator role. Another administrator can."
OWN_ACCOUNT = "You cannot deactivate your own account. Another administrator can."
LAST_ADMIN = "{name} is the last active Administrator. Make someone else an Administrator first."


def _admin_role_id() -> ColumnElement[int]:
    return select(Role.id).where(Role.name == ADMINISTRATOR).scalar_subquery()


def _another_active_admin(user_id: int) -> ColumnElement[bool]:
    other = aliased(User)
    return exists().where(
        other.id != user_id, other.active.is_(True), other.role_id == _admin_role_id()
    )


def _update_keeping_an_admin(user: User, **values: object) -> None:
    """UPDATE ``user`` with ``values`` unless that would leave no active Administrator."""
    if not (user.is_admin and user.active):
        db.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return
    db.session.execute(
        select(User.id)
        .where(User.active.is_(True), User.role_id == _admin_role_id())
        .with_for_update()
    )
    done = db.session.execute(
        update(User)
        .where(User.id == user.id, _another_active_admin(user.id))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:
        db.session.rollback()
        raise UserInputError(LAST_ADMIN.format(name=user.display_name))


def change_role(actor: User, user: User, role: Role) -> Change:
    """Give ``user`` the role ``role``; an empty Change if they had it already."""
    before = user.role.name
    if role.id == user.role_id:
        return Change({}, {})
    if user.is_admin and user.id == actor.id:
        raise UserInputError(OWN_ROLE)
    _update_keeping_an_admin(user, role_id=role.id)
    db.session.refresh(user)
    # Their sessions were opened under the old role's rules and rights.
    sessions.end_all_for(user.id, reason="role_changed")
    return Change({"role": before}, {"role": role.name})


def deactivate(actor: User, user: User) -> bool:
    """Switch the account off: every session ends at once, remembered devices, emailed links
    and an unused bypass stop working. False if it was off already."""
    if user.id == actor.id:
        raise UserInputError(OWN_ACCOUNT)
    if not user.active:
        return False
    _update_keeping_an_admin(user, active=False)
    db.session.refresh(user)
    sessions.end_all_for(user.id, reason="deactivated")
    devices.revoke_all(user.id)
    emailed_links.void_all(user.id)
    bypass.revoke(user)
    return True


def reactivate(user: User) -> bool:
    """Switch the account on again; False if it was on. They sign in with their password."""
    if user.active:
        return False
    user.active = True
    return True


@dataclass(frozen=True)
class Access:
    """What lets ``user`` in, or keeps them out, as their admin page shows it."""

    password_block: throttle.Block | None  # failed passwords: a delay, or an admin must unlock
    factor_lock: wrong_codes.Lock | None  # wrong codes: locked for a while, or until unlocked
    bypass_until: datetime | None  # a one-time bypass not used yet
    bypass_by: User | None
    invitation_until: datetime | None  # an open invitation to choose a password
    sessions: int  # signed in (or half-way) on this many browsers now
    devices: int  # remembered devices that skip the code
    addresses: int  # trusted addresses that skip the code

    @property
    def locked(self) -> bool:
        return self.password_block is not None or self.factor_lock is not None


def access_of(user: User) -> Access:
    now = utcnow()
    granted = bypass.pending(user, now)
    return Access(
        password_block=throttle.check(throttle.email_key(user.email)).block,
        factor_lock=wrong_codes.lock_of(user, now),
        bypass_until=user.mfa_bypass_until if granted else None,
        bypass_by=(
            db.session.get(User, user.mfa_bypass_by_id)
            if granted and user.mfa_bypass_by_id
            else None
        ),
        invitation_until=invitations.open_until(user),
        sessions=_count(UserSession, UserSession.state != ENDED, user),
        devices=_count(RememberedDevice, RememberedDevice.expires_at > now, user),
        addresses=_count(TrustedLocation, TrustedLocation.expires_at > now, user),
    )


def _count(model: type, condition: ColumnElement[bool], user: User) -> int:
    return db.session.scalar(select(func.count()).where(model.user_id == user.id, condition)) or 0
