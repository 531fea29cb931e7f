"""The page itself (ACC-1), and how every change on it answers: the changed section as an
htmx partial (with the sections it also changed, out of band), or back to the page."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, flash, redirect, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from blueprints.account import bp
from blueprints.htmx import redirect_to, render, wants_partial
from blueprints.mfa.forms import ConfirmForm
from models import User, UserSession, db
from services import account, audit, policy, sessions

PAGE = "account/security.html"
# The sections that are partials, in page order (the password has a page of its own).
SECTIONS = ("factors", "recovery", "devices", "sessions")


def me() -> tuple[User, UserSession]:
    """The signed-in person and this browser's session (login_required ran first)."""
    row = sessions.current()
    assert row is not None
    return current_user._get_current_object(), row


def context(**extra: object) -> dict[str, object]:
    user, row = me()
    return {
        "user": user,
        "overview": account.overview(user, row, policy.current()),
        "action": ConfirmForm(),
        "sections": SECTIONS,
        **extra,
    }


def answer(
    section: str,
    message: str,
    *,
    status: int = 200,
    also: tuple[str, ...] = (),
) -> Response:
    """After a change in ``section``: for htmx, that section with ``message`` in it (and the
    sections in ``also``, out of band: they changed too); for a plain form, back to the page
    (303) with the message on top, where it is seen (no #section: the browser would scroll
    past it). A refusal (``status`` 4xx) is no redirect: the page (or
    the section) comes back with the reason in the section."""
    notice = {"section": section, "text": message, "error": status >= 400}
    if wants_partial():
        return render(
            PAGE,
            "account/_answer.html",
            status,
            section=section,
            also=also,
            **context(notice=notice),
        )
    if status >= 400:
        return render(PAGE, PAGE, status, **context(notice=notice))
    flash(message, "success")
    return redirect_to(url_for("account.security"))


def changed(
    section: str,
    message: str,
    *,
    event: str,
    email: Callable[[], object],
    also: tuple[str, ...] = (),
    **details: object,
) -> Response:
    """A change went through: audit it (the person on themselves) in its transaction, commit,
    then ``email`` the person (ACC-3; after the commit, so no lock waits on a mail server)
    and answer with ``section``."""
    user, _ = me()
    audit.record(event, actor=user, subject=user, **details)
    db.session.commit()
    email()
    db.session.commit()  # a failed email is audited (services/notify.py)
    return answer(section, message, also=also)


@bp.get("")
@login_required
def index() -> ResponseReturnValue:
    return redirect(url_for("account.security"), code=303)


@bp.get("/security")
@login_required
def security() -> ResponseReturnValue:
    """Your ways of getting a code, recovery codes left, remembered devices, where you are
    signed in, and what your clinic asks of you."""
    return render(PAGE, PAGE, **context())
