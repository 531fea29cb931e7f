"""Where you are signed in (AUTH-6): sign out one other session, or every other one ("sign
out other devices"). The ended session's cookie is refused at its very next request: the
row it names no longer has a token."""

from __future__ import annotations

from flask import abort
from flask.typing import ResponseReturnValue
from flask_login import login_required

from blueprints.account import bp
from blueprints.account.security_views import changed, me
from blueprints.auth.fresh import fresh_required
from services import account, devices, notify, sessions
from services.wording import plural


@bp.post("/security/sessions/<int:session_id>/end")
@login_required
@fresh_required
def end_session(session_id: int) -> ResponseReturnValue:
    """Sign out one other session of yours; this one, someone else's or an ended one is a
    404 (this one signs out with "Sign out")."""
    user, row = me()
    other = sessions.other_of(user.id, session_id, keep=row)
    if other is None:
        abort(404)
    browser = devices.label_for(other.user_agent)
    sessions.end(other, "signed_out_by_user")
    return changed(
        "sessions",
        f"{browser}: signed out.",
        event="session.ended_by_user",
        email=lambda: notify.sessions_ended(user, browser=browser, count=1),
        session_id=other.id,
        browser=browser,
    )


@bp.post("/security/sessions/end-others")
@login_required
@fresh_required
def end_other_sessions() -> ResponseReturnValue:
    """Sign out every other session; remembered devices and trusted addresses are forgotten
    too, so each needs the password and the code again. This one stays signed in."""
    user, row = me()
    ended, forgotten = account.end_other_sessions(user, keep=row)
    message = f"Signed out {plural(ended, 'other session')}."
    if forgotten:
        message += f" {plural(forgotten, 'remembered device')} forgotten."
    return changed(
        "sessions",
        message,
        event="session.ended_others",
        email=lambda: notify.sessions_ended(
            user, browser=None, count=ended, devices_forgotten=forgotten
        ),
        also=("devices",),
        sessions=ended,
        devices=forgotten,
    )
