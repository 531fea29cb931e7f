from flask import Blueprint

bp = Blueprint("mfa", __name__, url_prefix="/mfa")

from blueprints.mfa import challenge, pending_guard, wizard  # noqa: E402, F401
