"""The clinic's admin area (ADM): only Administrators know it is there.

Everyone else (staff, a sign-in still pending, a visitor signed out) gets 404 from every
``/admin`` URL, GET or POST, before CSRF or the pending-sign-in guard answer: a 403 or a
redirect would advertise the area (ADM-1).
"""

from flask import Blueprint, Flask, abort, request
from flask_login import current_user

PREFIX = "/admin"

bp = Blueprint("admin", __name__, url_prefix=PREFIX)


def _is_admin_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def hide_from_non_admins(app: Flask) -> None:
    """Register the gate; call it before the extensions register their before-request hooks."""

    @app.before_request
    def admin_gate() -> None:
        if _is_admin_path(request.path) and not (
            current_user.is_authenticated and current_user.is_admin
        ):
            abort(404)


from blueprints.admin import (  # noqa: E402, F401
    api_views,
    audit_views,
    people_views,
    readiness_views,
    security_views,
    user_actions,
    user_views,
)
