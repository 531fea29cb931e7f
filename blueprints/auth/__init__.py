from flask import Blueprint

bp = Blueprint("auth", __name__)

from blueprints.auth import (  # noqa: E402, F401
    invitation_views,
    reauth_views,
    reset_views,
    views,
)
