"""The person's own security page (ACC-1 to ACC-3): ``/account/security`` and its changes.

One small views module per section. Every change needs a sign-in from the last 10 minutes
(``fresh_required``), is audited and emails the person; the rules live in
services/account.py. An id in a URL is looked up with its owner, so another person's factor,
device or session is a 404. A pending sign-in never gets here (blueprints/mfa/pending_guard).
"""

from flask import Blueprint

bp = Blueprint("account", __name__, url_prefix="/account")

from blueprints.account import (  # noqa: E402, F401
    device_views,
    factor_views,
    password_views,
    recovery_views,
    security_views,
    session_views,
)
