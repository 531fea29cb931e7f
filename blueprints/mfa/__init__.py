from flask import Blueprint

bp = Blueprint("mfa", __name__, url_prefix="/mfa")

from blueprints.mfa import challenge, wizard  # noqa: E402, F401, I001
from blueprints.mfa import pending_guard  # noqa: E402, F401
