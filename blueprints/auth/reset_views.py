"""Forgot password: ask for a link, then choose a new password with it (AUTH-7).

The emailed link is opened once (``open_reset_link``) and traded for state in the session,
so the pages where the password is chosen have a URL without the token (``link_pages``).
"""

from __future__ import annotations

from flask import Response
from flask.typing import ResponseReturnValue

from blueprints.auth import bp, link_pages
from blueprints.auth.forms import ForgotPasswordForm, ResetPasswordForm
from blueprints.htmx import render
from services import emailed_links, password_reset
from services.emailed_links import Link
from services.links import external_url

RESET = link_pages.LinkPage(
    emailed_links.PASSWORD_RESET,
    session_key="password_reset",
    endpoint="auth.reset_password",
    post_endpoint="auth.reset_password_post",
    words="reset",
)


def _render_forgot(form: ForgotPasswordForm, status: int = 200, **context: object) -> Response:
    return render(
        "auth/forgot_password.html",
        "auth/_forgot_password_form.html",
        status,
        form=form,
        minutes=password_reset.valid_minutes(),
        **context,
    )


@bp.get("/forgot-password")
def forgot_password() -> ResponseReturnValue:
    """The page that asks for the email address a reset link should go to."""
    return _render_forgot(ForgotPasswordForm())


@bp.post("/forgot-password")
def forgot_password_post() -> ResponseReturnValue:
    """Send a reset link if the address has an active account; answer the same either way.

    Cases: invalid form (422); otherwise always 200 with the same words, whether the address
    is unknown, switched off, over its hourly limit or sent a link. The email itself goes out
    after the response (see ``emailed_links.send_after_response``), and a mail server failure
    is audited, never shown.
    """
    form = ForgotPasswordForm()
    if not form.validate_on_submit():
        return _render_forgot(form, 422)
    outgoing = password_reset.request_link(
        form.email.data or "",
        lambda token: external_url("auth.open_reset_link", token=token),
    )
    response = _render_forgot(form, sent=True, address=(form.email.data or "").strip())
    if outgoing is not None:
        emailed_links.send_after_response(response, outgoing)
    return response


@bp.get("/reset-password/<token>")
def open_reset_link(token: str) -> ResponseReturnValue:
    """Trade the emailed token for state in the session, then 303 to /reset-password."""
    return link_pages.trade(RESET, token)


def _render_reset(
    link: Link | None, form: ResetPasswordForm | None = None, status: int = 200
) -> Response:
    return link_pages.render_page(RESET, link, form, status, minutes=password_reset.valid_minutes())


@bp.get("/reset-password")
def reset_password() -> ResponseReturnValue:
    """The new-password form for the opened link, or a page saying it no longer works (410)."""
    return _render_reset(link_pages.opened(RESET))


@bp.post("/reset-password")
def reset_password_post() -> ResponseReturnValue:
    """Set the new password with the opened link, then send the person to sign in.

    Cases: no link opened in this browser, or a dead one (410); invalid form (422, the link
    stays usable); link spent by a racing request meanwhile (410); success: the password
    changes, every session and remembered device of the user ends, this browser is signed
    out, the user is emailed, and a 303 or HX-Redirect goes to the sign-in page. Nobody is
    signed in here, and the second factor is asked for at the next sign-in as before.
    """
    link = link_pages.opened(RESET)
    if link is None:
        return _render_reset(None)
    form = ResetPasswordForm()
    if not form.validate_on_submit():
        return _render_reset(link, form, 422)
    if not password_reset.complete(link, form.password.data or ""):
        return _render_reset(link_pages.opened(RESET))
    response = link_pages.finished(
        RESET, "Your password has been changed. Sign in with your new password."
    )
    emailed_links.send_after_response(
        response, password_reset.changed_notice(link.user, external_url("auth.sign_in"))
    )
    return response
