"""Accepting an invitation: the new person chooses their password from the emailed link, then
signs in as anyone does (ADM-7). The link's steps are the reset link's (``link_pages``)."""

from __future__ import annotations

from flask import Response
from flask.typing import ResponseReturnValue

from blueprints.auth import bp, link_pages
from blueprints.auth.forms import ResetPasswordForm
from services import emailed_links, invitations
from services.emailed_links import Link

INVITATION = link_pages.LinkPage(
    emailed_links.INVITATION,
    session_key="invitation",
    endpoint="auth.invitation",
    post_endpoint="auth.invitation_post",
    words="invitation",
)


def _render(
    link: Link | None, form: ResetPasswordForm | None = None, status: int = 200
) -> Response:
    return link_pages.render_page(INVITATION, link, form, status, hours=invitations.valid_hours())


@bp.get("/invitation/<token>")
def open_invitation(token: str) -> ResponseReturnValue:
    """Trade the emailed token for state in the session, then 303 to /invitation."""
    return link_pages.trade(INVITATION, token)


@bp.get("/invitation")
def invitation() -> ResponseReturnValue:
    """The choose-your-password form for the opened invitation, or 410 when it is dead."""
    return _render(link_pages.opened(INVITATION))


@bp.post("/invitation")
def invitation_post() -> ResponseReturnValue:
    """Set the first password with the opened invitation, then send the person to sign in.

    Cases: no invitation opened in this browser, or a dead one (410); invalid form (422, the
    link stays usable); spent by a racing request meanwhile (410); success: the password is
    set, the link and any other of theirs stop working, this browser is signed out, and a 303
    or HX-Redirect goes to the sign-in page. Nobody is signed in here.
    """
    link = link_pages.opened(INVITATION)
    if link is None:
        return _render(None)
    form = ResetPasswordForm()
    if not form.validate_on_submit():
        return _render(link, form, 422)
    if not invitations.accept(link, form.password.data or ""):
        return _render(link_pages.opened(INVITATION))
    return link_pages.finished(
        INVITATION, "Your password is set. Sign in with your email address and new password."
    )
