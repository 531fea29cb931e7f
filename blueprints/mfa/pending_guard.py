"""While a sign-in is pending, only its own step is reachable (AUTH-2).

Runs before every request. A pending session asking for anything else (a page, an htmx
partial, an account or admin route, a URL that does not exist) is sent back to its step. A
session signed in without a second factor, whose user the policy now asks for one, becomes
a pending setup at its next request rather than at its next sign-in.
"""

from __future__ import annotations

from flask import request, url_for
from flask.typing import ResponseReturnValue

from blueprints.htmx import redirect_to
from blueprints.mfa import bp
from blueprints.mfa.challenge import ENDPOINTS as ENDPOINTS_OF_CHALLENGE
from blueprints.mfa.wizard import flow as wizard_flow
from models import UserSession, db
from models.sessions import PENDING, STEP_CHALLENGE, STEP_SETUP
from services import audit, policy, sessions, signin

ALWAYS = frozenset({"static", "auth.sign_out"})
# What each pending step may reach: the challenge's endpoints, or the wizard's step table.
STEP_ENDPOINTS = {STEP_CHALLENGE: ENDPOINTS_OF_CHALLENGE, STEP_SETUP: wizard_flow.ENDPOINTS}
STEP_HOME = {STEP_CHALLENGE: "mfa.challenge", STEP_SETUP: "mfa.setup"}


@bp.before_app_request
def keep_pending_sign_in_on_its_step() -> ResponseReturnValue | None:
    """Redirect a pending session's every other request to its step."""
    if request.endpoint == "static":
        return None
    row = sessions.current()
    if row is None:
        return None
    if row.state != PENDING:
        return _setup_if_now_owed(row)
    step = row.pending_step or STEP_CHALLENGE
    if request.endpoint in ALWAYS or request.endpoint in STEP_ENDPOINTS.get(step, ()):
        return None
    return redirect_to(url_for(STEP_HOME.get(step, "mfa.challenge")))


def _setup_if_now_owed(row: UserSession) -> ResponseReturnValue | None:
    if row.mfa_method != "none" or request.endpoint in ALWAYS:
        return None
    if not signin.setup_owed(row.user, policy.current()):
        return None
    sessions.owe_setup(row)
    audit.record("sign_in.setup_now_required", actor=row.user, subject=row.user)
    db.session.commit()
    return redirect_to(url_for("mfa.setup"))
