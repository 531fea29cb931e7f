"""Forgot password: ask for a link, then choose a new password with it (AUTH-7).

The emailed link is opened once (``open_reset_link``) and traded for state in the session,
so the pages where the password is chosen have a URL without the token.
"""

from __future__ import annotations

from flask import Response, flash, redirect, session, url_for
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


# The signed session cookie carries an opened link as the SHA-256 of its token.
SESSION_KEY = "password_reset"


def _no_referrer(response: Response) -> Response:
    # Belt and braces: nothing on these pages may tell another page where the browser was.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _opened_link() -> Link | None:
    """The link this browser opened, if it still works; forgets a dead one."""
    try:
        token_hash = bytes.fromhex(session.get(SESSION_KEY, ""))
    except (TypeError, ValueError):
        token_hash = b""
    link = password_reset.usable_by_digest(token_hash) if token_hash else None
    if link is None:
        session.pop(SESSION_KEY, None)
    return link


def _render_reset(
    link: Link | None, form: ResetPasswordForm | None = None, status: int = 200
) -> Response:
    if link is None:
        # 410 Gone for every dead link: used, expired, mistyped or never issued look the same.
        return _no_referrer(
            render(
                "auth/reset_password.html",
                "auth/_reset_password_form.html",
                410,
                expired=True,
                minutes=password_reset.valid_minutes(),
            )
        )
    return _no_referrer(
        render(
            "auth/reset_password.html",
            "auth/_reset_password_form.html",
            status,
            expired=False,
            minutes=password_reset.valid_minutes(),
            form=form or ResetPasswordForm(),
            email=link.user.email,
        )
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
        lambda token: external_url("auth.open_reset_link", token=token),
    )
    response = _render_forgot(form, sent=True, address=(form.email.data or "").strip())
    if outgoing is not None:
        password_reset.send_after_response(response, outgoing)
    return response


@bp.get("/reset-password/<token>")
def open_reset_link(token: str) -> ResponseReturnValue:
    """Trade the emailed token for state in the session, then 303 to /reset-password.

    A token left in the address bar would reach the browser history, the Referer of whatever
    the page loads and every log on the way. So the first request keeps only what the server
    needs: the SHA-256 of the token (what the database stores) in the signed session cookie,
    which the client can read but not forge without SECRET_KEY. The digest rather than the
    row id, because SQLite may hand a deleted row's id to a newer link, possibly someone
    else's. Every later request checks the link again (unused, unexpired, account active), so
    a copy of the cookie is worth no more than the link and dies with it. A dead or unknown
    token stores nothing, and /reset-password then answers 410 without it in the URL.
    """
    token_hash = password_reset.digest(token)
    if token_hash is not None and password_reset.usable_by_digest(token_hash) is not None:
        session[SESSION_KEY] = token_hash.hex()
    else:
        session.pop(SESSION_KEY, None)
    return _no_referrer(redirect(url_for("auth.reset_password"), code=303))


@bp.get("/reset-password")
def reset_password() -> ResponseReturnValue:
    """The new-password form for the opened link, or a page saying it no longer works (410)."""
    return _render_reset(_opened_link())


@bp.post("/reset-password")
def reset_password_post() -> ResponseReturnValue:
    """Set the new password with the opened link, then send the person to sign in.

    Cases: no link opened in this browser, or a dead one (410); invalid form (422, the link
    stays usable); link spent by a racing request meanwhile (410); success: the password
    changes, every session and remembered device of the user ends, this browser is signed
    out, the user is emailed, and a 303 or HX-Redirect goes to the sign-in page. Nobody is
    signed in here, and the second factor is asked for at the next sign-in as before.
    """
    link = _opened_link()
    if link is None:
        return _render_reset(None)
    form = ResetPasswordForm()
    if not form.validate_on_submit():
        return _render_reset(link, form, 422)
    if not password_reset.complete(link, form.password.data or ""):
        session.pop(SESSION_KEY, None)
        return _render_reset(None)
    session.pop(SESSION_KEY, None)
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
