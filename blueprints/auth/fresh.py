"""Fresh authentication (ACC-3): changes to factors and settings need the password (or a code)
entered in the last ``MFA_FRESH_AUTH_FOR`` (10 minutes).

A signed-in session older than that is sent to a small page that asks for the password again
and then brings the person back where they were. A pending sign-in has just entered its
password, so it is fresh by definition.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Response, request, url_for
from flask.typing import ResponseReturnValue

from blueprints.htmx import redirect_to
from services import sessions
from services.redirects import page_on_this_site, safe_next


def _come_back_to() -> str | None:
    """Where to return after re-authenticating: this page for a GET; for a POST (nothing of
    it is kept), the page the form was on, if it was ours."""
    if request.method == "GET":
        return safe_next(request.full_path.rstrip("?"))
    return page_on_this_site(request.referrer)


def stale() -> Response | None:
    """The redirect to re-authenticate, if the current signed-in session is not fresh."""
    row = sessions.current()
    if row is None or sessions.is_fresh(row):
        return None
    back = _come_back_to()
    return redirect_to(
        url_for("auth.reauthenticate", next=back) if back else url_for("auth.reauthenticate")
    )


def fresh_required(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Run ``view`` only for a fresh session; others re-authenticate first and nothing the
    request asked for happens."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        return stale() or view(*args, **kwargs)

    return guarded
