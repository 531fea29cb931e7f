"""Re-authentication (ACC-3): the password again before a change, then back where they were."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user

from blueprints.auth import bp
from blueprints.auth.forms import ReauthenticateForm
from blueprints.htmx import redirect_to, render
from models import User, db
from models.types import utcnow
from services import audit, sessions, throttle
from services.redirects import safe_next


def password_refused(
    user: User, typed: str, *, event: str, wrong: str, again: Callable[[int, str], Response]
) -> Response | None:
    """The password typed again by a signed-in person (here, and to change it), throttled
    like sign-in (AUTH-1): None when it is right; else the form ``again`` (status, message):
    429 with Retry-After while throttled, or 422 saying ``wrong``, audited as ``event``."""
    checked = throttle.check_own_password(user, typed)
    if isinstance(checked, throttle.Block):
        now = utcnow()
        response = again(429, checked.message(now))
        response.headers["Retry-After"] = str(checked.retry_after(now))
        return response
    if checked:
        return None
    audit.record(event, actor=user, subject=user)
    db.session.commit()
    return again(422, wrong)


def _render(form: ReauthenticateForm, status: int = 200, **context: object) -> Response:
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
    refused = password_refused(
        user,
        form.password.data or "",
        event="reauth.failed",
        wrong="That password is not right. Try again.",
        again=lambda status, message: _render(form, status, error=message),
    )
    if refused is not None:
        return refused
    row = sessions.current()
    assert row is not None  # login_required: a signed-in session
    sessions.mark_fresh(row)
    audit.record("reauth.succeeded", actor=user, subject=user)
    db.session.commit()
    login_user(user)  # the new session id came with an emptied cookie session
    return redirect_to(safe_next(form.next.data) or url_for("home.index"))
