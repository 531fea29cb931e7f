from flask import Blueprint

bp = Blueprint("auth", __name__)

from blueprints.auth import reauth_views, reset_views, views  # noqa: E402, F401
