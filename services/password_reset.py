"""Forgotten passwords (AUTH-7): a single-use emailed link, valid for 30 minutes.

The link itself (token, digest, single use, voiding, delivery) is ``services.emailed_links``,
shared with invitations. What is particular to a reset: asking for a link answers the same
whether or not the address has an account, and the email goes out only after the response has
left (``emailed_links.send_after_response``), so neither the words nor the time taken tell an
address with an account from one without. Completing a reset changes the password and, through
``account.change_password``, ends every session and forgets every remembered device. It never
signs anyone in and never touches the second factor: the next sign-in asks for it as before.
"""

from __future__ import annotations

from collections.abc import Callable

from models import User, db
from services import account, audit, emailed_links, throttle
from services.emailed_links import PASSWORD_RESET, Link, Outgoing
from services.users import by_email

# Emails per user per rolling hour: enough for a lost message or two, too few to flood a
# mailbox by asking on someone's behalf.
SENDS_PER_HOUR = 5


def valid_minutes() -> int:
    return int(PASSWORD_RESET.valid_for().total_seconds() // 60)


def request_link(email: str, link_for: Callable[[str], str]) -> Outgoing | None:
    """Record a request for a reset link; the email to send, or None. Commits.

    Cases: unknown address, switched-off account or API user (audited, nothing sent);
    SENDS_PER_HOUR links already made in the last hour (audited, nothing sent); otherwise a new
    link that voids the user's earlier unused ones. The caller answers the same in every case.
    """
    user = by_email(email)
    if user is None or not user.active or not user.is_person:
        reason = "unknown_address" if user is None else "inactive" if user.is_person else "api_user"
        audit.record("password_reset.refused", subject=user, reason=reason)
        db.session.commit()
        return None
    if emailed_links.made_last_hour(user, PASSWORD_RESET) >= SENDS_PER_HOUR:
        audit.record("password_reset.throttled", subject=user)
        db.session.commit()
        return None
    outgoing = emailed_links.issue(
        user,
        PASSWORD_RESET,
        link_for,
        subject="Reset your password",
        template="password_reset",
        minutes=valid_minutes(),
        # No "if this was not you, change your password" footer: here that is the wrong advice.
        warning=False,
    )
    audit.record("password_reset.requested", subject=user)
    db.session.commit()
    return outgoing


def usable(token: str) -> Link | None:
    """The reset link if it still works (see ``emailed_links.usable``)."""
    return emailed_links.usable(token, PASSWORD_RESET)


def complete(link: Link, new_password: str) -> bool:
    """Spend the link and set the new password; False if the link was spent (or expired)
    by the time this ran. Commits.

    The caller has checked the password (``password_problem``), so a typo does not burn the
    link. Of two racing requests only one changes the password (``emailed_links.spend``).
    """
    user = link.user
    if not emailed_links.spend(link):
        db.session.rollback()
        return False
    account.change_password(user, new_password)
    # A reset is how a locked-out address gets back in (see services.throttle).
    throttle.reset(throttle.email_key(user.email))
    audit.record("password_reset.completed", subject=user)
    db.session.commit()
    return True


def changed_notice(user: User, sign_in_url: str) -> Outgoing:
    return Outgoing(
        user_id=user.id,
        subject="Your password was changed",
        template="password_changed",
        context={"sign_in_url": sign_in_url},
    )
