"""Re-authentication (ACC-3): the password again before a change, then back where they were."""

from __future__ import annotations

from flask import request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user

from blueprints.auth import bp
from blueprints.auth.forms import ReauthenticateForm
from blueprints.htmx import redirect_to, render
from models import db
from models.types import utcnow
from services import audit, sessions, throttle
from services.client import client_ip
from services.passwords import verify_password
from services.redirects import safe_next


def _render(form: ReauthenticateForm, status: int = 200, **context: object) -> ResponseReturnValue:
    return render(
        "auth/reauthenticate.html",
        "auth/_reauthenticate_form.html",
        status,
        form=form,
        user=current_user,
        **context,
    )


@bp.get("/reauthenticate")
@login_required
def reauthenticate() -> ResponseReturnValue:
    """Ask for the password again."""
    return _render(ReauthenticateForm(next=safe_next(request.args.get("next")) or ""))


@bp.post("/reauthenticate")
@login_required
def reauthenticate_post() -> ResponseReturnValue:
    """Check the password, throttled like sign-in (AUTH-1). Right: fresh from now under a new
    session id, and back to ``next``. Wrong: 422, counted. Throttled: 429 with Retry-After."""
    form = ReauthenticateForm()
    if not form.validate_on_submit():
        return _render(form, 422)
    user = current_user._get_current_object()
    keys = (throttle.email_key(user.email), throttle.ip_key(client_ip()))
    status = throttle.check(*keys)
    if status.block is not None:
        now = utcnow()
        response = _render(form, 429, error=status.block.message(now))
        response.headers["Retry-After"] = str(status.block.retry_after(now))
        return response
    if not verify_password(user.password_hash, form.password.data or ""):
        throttle.record_failure(*keys)
        audit.record("reauth.failed", actor=user, subject=user)
        db.session.commit()
        return _render(form, 422, error="That password is not right. Try again.")
    throttle.reset(keys[0], status=status)
    row = sessions.current()
    assert row is not None  # login_required: a signed-in session
    sessions.mark_fresh(row)
    audit.record("reauth.succeeded", actor=user, subject=user)
    db.session.commit()
    login_user(user)  # the new session id came with an emptied cookie session
    return redirect_to(safe_next(form.next.data) or url_for("home.index"))
