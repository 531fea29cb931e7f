"""Forgot password: ask for a link, then choose a new password with it (AUTH-7)."""

from __future__ import annotations

from flask import Response, flash, url_for
from flask.typing import ResponseReturnValue
from flask_login import logout_user

from blueprints.auth import bp
from blueprints.auth.forms import ForgotPasswordForm, ResetPasswordForm
from blueprints.htmx import redirect_to, render
from models import db
from services import password_reset, sessions
from services.links import external_url
from services.password_reset import Link


def _render_forgot(form: ForgotPasswordForm, status: int = 200, **context: object) -> Response:
    return render(
        "auth/forgot_password.html",
        "auth/_forgot_password_form.html",
        status,
        form=form,
        minutes=password_reset.valid_minutes(),
        **context,
    )


def _render_reset(
    token: str, link: Link | None, form: ResetPasswordForm | None = None, status: int = 200
) -> Response:
    if link is None:
        # 410 Gone for every dead link: used, expired, mistyped or never issued look the same.
        return render(
            "auth/reset_password.html",
            "auth/_reset_password_form.html",
            410,
            expired=True,
            minutes=password_reset.valid_minutes(),
        )
    return render(
        "auth/reset_password.html",
        "auth/_reset_password_form.html",
        status,
        expired=False,
        minutes=password_reset.valid_minutes(),
        form=form or ResetPasswordForm(),
        token=token,
        email=link.user.email,
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
    after the response (see ``password_reset.send_after_response``), and a mail server failure
    is audited, never shown.
    """
    form = ForgotPasswordForm()
    if not form.validate_on_submit():
        return _render_forgot(form, 422)
    outgoing = password_reset.request_link(
        form.email.data or "",
        lambda token: external_url("auth.reset_password", token=token),
    )
    response = _render_forgot(form, sent=True, address=(form.email.data or "").strip())
    if outgoing is not None:
        password_reset.send_after_response(response, outgoing)
    return response


@bp.get("/reset-password/<token>")
def reset_password(token: str) -> ResponseReturnValue:
    """The new-password form, or a page saying the link no longer works (410)."""
    return _render_reset(token, password_reset.usable(token))


@bp.post("/reset-password/<token>")
def reset_password_post(token: str) -> ResponseReturnValue:
    """Set the new password with a working link, then send the person to sign in.

    Cases: dead link (410); invalid form (422, the link stays usable); link spent by a racing
    request meanwhile (410); success: the password changes, every session and remembered
    device of the user ends, this browser is signed out, the user is emailed, and a 303 or
    HX-Redirect goes to the sign-in page. Nobody is signed in here, and the second factor is
    asked for at the next sign-in as before.
    """
    link = password_reset.usable(token)
    if link is None:
        return _render_reset(token, None)
    form = ResetPasswordForm()
    if not form.validate_on_submit():
        return _render_reset(token, link, form, 422)
    if not password_reset.complete(link, form.password.data or ""):
        return _render_reset(token, None)
    # Whoever was signed in on this browser is signed out: the next step is a fresh sign-in.
    sessions.end_current("password_reset")
    db.session.commit()
    logout_user()
    flash("Your password has been changed. Sign in with your new password.", "success")
    response = redirect_to(url_for("auth.sign_in"))
    password_reset.send_after_response(
        response, password_reset.changed_notice(link.user, external_url("auth.sign_in"))
    )
    return response
