from flask import Blueprint

bp = Blueprint("mfa", __name__, url_prefix="/mfa")

from blueprints.mfa import guard, views, wizard  # noqa: E402, F401
