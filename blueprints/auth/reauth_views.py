"""Re-authentication (ACC-3): the password again before a change, then back where they were."""

from __future__ import annotations

from flask import Response, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user

from blueprints.auth import bp
from blueprints.auth.forms import ReauthenticateForm
from blueprints.htmx import redirect_to, render
from models import db
from models.types import utcnow
from services import audit, sessions, throttle
from services.redirects import safe_next


def throttled(response: Response, block: throttle.Block) -> Response:
    """A refused password try: the page says until when, Retry-After says it to machines."""
    response.headers["Retry-After"] = str(block.retry_after(utcnow()))
    return response


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
    checked = throttle.check_own_password(user, form.password.data or "")
    if isinstance(checked, throttle.Block):
        return throttled(_render(form, 429, error=checked.message(utcnow())), checked)
    if not checked:
        audit.record("reauth.failed", actor=user, subject=user)
        db.session.commit()
        return _render(form, 422, error="That password is not right. Try again.")
    row = sessions.current()
    assert row is not None  # login_required: a signed-in session
    sessions.mark_fresh(row)
    audit.record("reauth.succeeded", actor=user, subject=user)
    db.session.commit()
    login_user(user)  # the new session id came with an emptied cookie session
    return redirect_to(safe_next(form.next.data) or url_for("home.index"))
