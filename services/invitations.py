"""Inviting staff from the web (ADM-7): an admin adds a person, who is emailed a single-use
link, valid 72 hours (``MFA_INVITATION_VALID_FOR``), to choose their password.

The link is an ``emailed_links`` link of purpose "invitation", the same machinery as a
password reset: a resend voids the old link, the link works once, and an undelivered one is
deleted. Until the password is chosen the person has none (``User.invited``), so nobody can
sign in as them. Choosing it never signs them in: they then sign in as anyone does, and meet
the policy's second step there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flask import current_app

from models import Role, User, db
from services import account, audit, emailed_links
from services.emailed_links import INVITATION, Link, Outgoing
from services.users import UserInputError, create_user

# Invitations per person per rolling hour: a resend or two for a lost email, no mail flood.
SENDS_PER_HOUR = 5


def valid_hours() -> int:
    return int(INVITATION.valid_for().total_seconds() // 3600)


def invite(
    *, email: str, full_name: str, role: Role, mobile: str | None, actor: User | None
) -> User:
    """Add the person without a password; the caller sends ``link_for`` them and commits.
    UserInputError: an address that is taken or not one, or a number that is not a mobile."""
    user = create_user(email, None, role=role.name, full_name=full_name, mobile=mobile)
    db.session.flush()
    audit.record("admin.user_invited", actor=actor, subject=user, role=role.name)
    return user


def link_for(
    user: User, url_for_token: Callable[[str], str], *, actor: User | None, sign_in_url: str
) -> Outgoing:
    """A new invitation link for ``user`` (voiding the one before), and its email. Refused
    (UserInputError) once they have a password, while their account is switched off, or after
    SENDS_PER_HOUR in the last hour. The caller commits, then sends."""
    if not user.invited:
        raise UserInputError(f"{user.display_name} has already chosen a password.")
    if not user.active:
        raise UserInputError(f"{user.display_name}'s account is switched off: reactivate it first.")
    if emailed_links.made_last_hour(user, INVITATION) >= SENDS_PER_HOUR:
        raise UserInputError(
            f"{SENDS_PER_HOUR} invitations went to {user.email} in the last hour. "
            "Check the address, and try again later."
        )
    clinic = current_app.config["MFA_CLINIC_NAME"]
    return emailed_links.issue(
        user,
        INVITATION,
        url_for_token,
        subject=f"You are invited to sign in to {clinic}",
        template="invitation",
        hours=valid_hours(),
        by=actor.display_name if actor else None,
        role=user.role.name,
        sign_in_url=sign_in_url,
        # An invitation is no security event: no "when, from where", no "if this was not you".
        when=None,
        ip="",
        warning=False,
    )


def open_until(user: User) -> datetime | None:
    """When the person's open invitation expires, or None when there is none."""
    row = emailed_links.open_link(user, INVITATION) if user.invited else None
    return row.expires_at if row is not None else None


def accept(link: Link, password: str) -> bool:
    """Spend the invitation and set the password; False if the link was spent (or expired)
    by the time this ran. Commits. The caller has checked the password."""
    if not emailed_links.spend(link):
        db.session.rollback()
        return False
    account.change_password(link.user, password)
    audit.record("invitation.accepted", actor=link.user, subject=link.user)
    db.session.commit()
    return True
