"""The few helpers that decide page or partial and how to redirect (STYLE.md, htmx).

Only a plain htmx request gets a partial. A boosted request or a history restore wants the
whole page, and caches must know the answer depends on those headers.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, make_response, redirect, render_template, request

VARY = ("HX-Request", "HX-Boosted", "HX-History-Restore-Request")


def wants_partial() -> bool:
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-Boosted") != "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def render(page: str, partial: str, status: int = 200, **context: Any) -> Response:
    """Render the partial for htmx, the full page for everyone else, from the same URL."""
    template = partial if wants_partial() else page
    response = make_response(render_template(template, **context), status)
    response.vary.update(VARY)
    return response


def redirect_to(url: str) -> Response:
    """303 for a plain form post; for htmx, a full navigation via HX-Redirect."""
    if request.headers.get("HX-Request") == "true":
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)


def go_to(url: str, *, target: str) -> Response:
    """Move to the next step after a POST.

    htmx: HX-Location makes htmx GET ``url`` as a partial into ``target`` and push the URL,
    so the address bar stays in step. Plain form: 303 to the page.
    """
    if request.headers.get("HX-Request") == "true":
        response = make_response("", 200)
        response.headers["HX-Location"] = json.dumps(
            {"path": url, "target": target, "swap": "innerHTML"}
        )
        return response
    return redirect(url, code=303)
