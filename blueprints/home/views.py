"""The signed-in home page."""

from flask import render_template
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from blueprints.home import bp
from services import sessions


@bp.get("/")
@login_required
def index() -> ResponseReturnValue:
    """Who you are and how you signed in."""
    return render_template("home/index.html", user=current_user, user_session=sessions.current())
