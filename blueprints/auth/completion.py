"""The one way every sign-in ends (AUTH-2, AUTH-3, AUTH-5).

Password only (no second factor owed), a remembered device, the challenge, a recovery code,
the wizard's proved factor and "Don't use two-step sign-in" all finish here: a new session id,
the audit row, the login, an optional remembered device, and the redirect to a safe ``next``.
"""

from __future__ import annotations

from flask import Response, url_for
from flask_login import login_user

from blueprints.htmx import redirect_to
from models import User, UserSession, db
from services import (
    audit,
    devices,
    factor_kinds,
    locations,
    notify,
    policy,
    requirement,
    sessions,
    wrong_codes,
)
from services.redirects import safe_next

# Methods that involve no code, so there is no run of wrong codes to clear.
_NO_CODE = frozenset({"none", "device", "location"})
# A second factor passed with one of these may trust the address (DEV-3); a recovery code is
# an emergency, and forgets trusted places instead.
_TRUSTS_LOCATION = frozenset(kind.name for kind in factor_kinds.enrollable())


def complete_sign_in(
    user: User,
    *,
    method: str,
    pending: UserSession | None = None,
    next_url: str | None = None,
    remember_device: bool = False,
    then: str | None = None,
    passed: wrong_codes.Passed | None = None,
) -> Response | None:
    """Sign ``user`` in and answer with where they go next. Commits.

    With ``pending``, that sign-in is promoted under a new session id; None means a racing
    request completed, ended or outlived it first, and nothing was done. Without, a signed-in
    session is opened (no second factor owed, or a remembered device). ``then`` overrides the
    destination (the wizard's next step); otherwise it is the pending sign-in's ``next``, or
    ``next_url``, or home. htmx gets HX-Redirect: a full page, so the header shows who is
    signed in. ``passed``: the challenge's code, spent behind the gate, which says whether
    there is a run of wrong codes to clear.
    """
    if pending is not None:
        if not sessions.promote(pending, method=method):
            db.session.rollback()
            return None
        next_url = pending.pending_next
    else:
        sessions.start(user, method=method)
    if method not in _NO_CODE:
        wrong_codes.record_success(user, passed)
    audit.record("sign_in.succeeded", actor=user, subject=user, method=method)
    response = redirect_to(then or safe_next(next_url) or url_for("home.index"))
    clinic = policy.current()
    if method in _TRUSTS_LOCATION:
        locations.trust_here(user, requirement.of(user, clinic).same_location_days)
    days = policy.remember_days_for(user, clinic)
    device = None
    if remember_device and days > 0:
        device = devices.remember(response, user, days)
        audit.record("device.remembered", actor=user, subject=user, label=device.label)
    db.session.commit()
    login_user(user)
    if device is not None:
        notify.device_remembered(user, device)
        db.session.commit()
    return response
