"""Changing your password (ACC-2) without the forgot-password email: the current password,
the new one twice under the one length rule; other sessions end and remembered devices are
forgotten (services/account.change_password); this browser stays signed in under a new
session id."""

from __future__ import annotations

from flask import Response, flash, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required, login_user

from blueprints.account import bp
from blueprints.account.forms import ChangePasswordForm
from blueprints.account.security_views import me
from blueprints.auth.fresh import fresh_required
from blueprints.auth.reauth_views import password_refused
from blueprints.htmx import redirect_to, render
from models import db
from services import account, audit, notify, sessions
from services.links import external_url
from services.passwords import MIN_LENGTH

PAGE = ("account/password.html", "account/_password_form.html")


def _render(form: ChangePasswordForm, status: int = 200, **context: object) -> Response:
    user, _ = me()
    return render(*PAGE, status, form=form, user=user, min_length=MIN_LENGTH, **context)


@bp.get("/security/password")
@login_required
@fresh_required
def password() -> ResponseReturnValue:
    """The change-password form."""
    return _render(ChangePasswordForm())


@bp.post("/security/password")
@login_required
@fresh_required
def password_post() -> ResponseReturnValue:
    """Cases: a field missing, the new password too short or the two not the same (422);
    the current password wrong (422, counted like a failed sign-in); too many wrong ones
    (429 with Retry-After); right: changed, then back to the security page."""
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        return _render(form, 422)
    user, row = me()
    refused = password_refused(
        user,
        form.current.data or "",
        event="password.change_refused",
        wrong="That is not your current password.",
        again=lambda status, message: _render(form, status, error=message),
    )
    if refused is not None:
        return refused
    account.change_password(user, form.password.data or "", keep=row)
    # A new session id for the new credentials; the emptied cookie session needs the login.
    sessions.mark_fresh(row)
    audit.record("password.changed", actor=user, subject=user, via="account")
    db.session.commit()
    login_user(user)
    notify.password_changed(
        user, sign_in_url=external_url("auth.sign_in"), by_admin=False, from_account=True
    )
    db.session.commit()
    flash("Your password was changed. Every other device was signed out.", "success")
    # A full page even for htmx: the new session id came with a new CSRF token.
    return redirect_to(url_for("account.security"))
