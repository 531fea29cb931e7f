"""Where you are signed in (AUTH-6): sign out one other session, or every other one ("sign
out other devices"). The ended session's cookie is refused at its very next request: the
row it names no longer has a token."""

from __future__ import annotations

from flask import abort
from flask.typing import ResponseReturnValue
from flask_login import login_required

from blueprints.account import bp
from blueprints.account.security_views import answer, me
from blueprints.auth.fresh import fresh_required
from models import db
from services import account, audit, devices, notify, sessions
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
    audit.record(
        "session.ended_by_user", actor=user, subject=user, session_id=other.id, browser=browser
    )
    db.session.commit()
    notify.sessions_ended(user, browser=browser, count=1)
    db.session.commit()
    return answer("sessions", f"{browser}: signed out.")


@bp.post("/security/sessions/end-others")
@login_required
@fresh_required
def end_other_sessions() -> ResponseReturnValue:
    """Sign out every other session; remembered devices and trusted addresses are forgotten
    too, so each needs the password and the code again. This one stays signed in."""
    user, row = me()
    ended, forgotten = account.end_other_sessions(user, keep=row)
    audit.record(
        "session.ended_others", actor=user, subject=user, sessions=ended, devices=forgotten
    )
    db.session.commit()
    notify.sessions_ended(user, browser=None, count=ended, devices_forgotten=forgotten)
    db.session.commit()
    message = f"Signed out {plural(ended, 'other session')}."
    if forgotten:
        message += f" {plural(forgotten, 'remembered device')} forgotten."
    return answer("sessions", message, also=("devices",))
