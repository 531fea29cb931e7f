"""The API (ADM-10): JSON for reporting tools, opened by an API user's bearer token alone.

Tokens and cookies never cross. A request under ``/api/`` gets no cookie session at all: its
cookie is not read (a signed-in browser gets 401 like anyone without a token) and no cookie is
set in the answer. A page elsewhere never looks at an ``Authorization`` header, so a token
opens no page. With no cookie to ride on, a forged cross-site request carries nothing, which
is why CSRFProtect leaves this blueprint alone.
"""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Blueprint, Flask, Request
from flask.sessions import NullSession, SecureCookieSessionInterface

from extensions import csrf

PREFIX = "/api/"

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def is_api_path(path: str) -> bool:
    return path.startswith(PREFIX) or path == PREFIX.rstrip("/")


class NoSession(NullSession):
    """The session of an API request: empty, and writing to it is a bug worth a loud error."""

    def _fail(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("API requests have no session: the bearer token is all they carry.")

    __setitem__ = __delitem__ = clear = pop = popitem = update = setdefault = _fail  # type: ignore[assignment]


class CookieSessionsOutsideTheApi(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions for pages; none for the API (a null session is never
    saved, so no Set-Cookie can leave an API response)."""

    def open_session(self, app: Flask, request: Request) -> Any:
        if is_api_path(request.path):
            return NoSession()
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    """Sessions that skip the API, the rate limiter, and the blueprint without CSRF."""
    from services import api_limits

    app.session_interface = CookieSessionsOutsideTheApi()
    api_limits.init_app(app)
    csrf.exempt(bp)
    app.register_blueprint(bp)


from blueprints.api import views  # noqa: E402, F401
