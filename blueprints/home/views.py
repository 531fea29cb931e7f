"""The signed-in home page."""

from flask import render_template
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from sqlalchemy import select

from blueprints.home import bp
from models import Role, db
from services import factor_kinds, sessions


@bp.get("/")
@login_required
def index() -> ResponseReturnValue:
    """Who you are and how you signed in."""
    default = current_user.default_factor
    return render_template(
        "home/index.html",
        user=current_user,
        user_session=sessions.current(),
        default_kind=factor_kinds.get(default.kind) if default else None,
    )


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """For the proxy's health check (and `make bench`'s floor): the app answers and one
    database read succeeds."""
    db.session.execute(select(Role.id).limit(1)).first()
    return "ok\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
