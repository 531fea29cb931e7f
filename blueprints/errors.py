"""Error pages that work as full pages and as htmx partials, and the input guards (SEC-3)."""

from __future__ import annotations

import contextlib
import re

from flask import Flask, Response, current_app, flash, g, make_response, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from markupsafe import escape
from werkzeug.exceptions import (
    BadHost,
    BadRequest,
    HTTPException,
    InternalServerError,
    SecurityError,
    UnsupportedMediaType,
)

from blueprints import api
from blueprints.api import errors as api_errors
from blueprints.htmx import VARY, redirect_to, render, wants_partial
from extensions import login_manager
from models import db
from services.links import redact_tokens
from services.redirects import page_on_this_site, safe_next

MESSAGES = {
    400: ("Something in that request was not right", "Go back, reload the page and try again."),
    403: ("You cannot open this page", "Your account does not have access to it."),
    404: ("Page not found", "Check the address, or go back to the start page."),
    405: ("That action is not available here", "Go back and use the buttons on the page."),
    413: ("That was too much to send", "Shorten what you entered and try again."),
    415: ("That kind of request is not accepted here", "Use the form on the page."),
    422: ("Some details need fixing", "Go back, check what you entered and try again."),
    429: ("Too many attempts", "Wait a little, then try again."),
    500: (
        "Something went wrong on our side",
        "Try again. If it keeps happening, tell your IT person.",
    ),
}


BAD_HOST_HINT = "This server does not answer to that address. Use the clinic's own sign-in link."
# What Flask raises while matching a request whose Host header is malformed (BadHost) or not
# in TRUSTED_HOSTS (SecurityError); the request then has no URL adapter, so url_for fails.
_HOST_REFUSED = (BadHost, SecurityError)
# C0 control characters but tab, CR and LF.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


FORM_EXPIRED = "The form had expired, so nothing was sent. Please try again."


def _error_response(status: int, detail: str | None = None, **extra: str | None) -> Response:
    title, hint = MESSAGES.get(status, MESSAGES[400])
    context = {"code": status, "title": title, "hint": detail or hint}
    try:
        return render("errors/page.html", "errors/_error.html", status, **context, **extra)
    except Exception:
        # The full page builds URLs (none without a usable Host), reads the signed-in user
        # (the database may be what failed) and renders templates: any of it may fail, and
        # an error page must not. The plain page needs none of them.
        with contextlib.suppress(Exception):
            db.session.rollback()
        if not isinstance(request.routing_exception, _HOST_REFUSED):
            current_app.logger.exception("The %s error page could not be rendered", status)
        return _plain_error_response(**context)


def _plain_error_response(code: int, title: str, hint: str) -> Response:
    """The error page without templates, url_for or the database: same words, same status."""
    box = (
        f'<div class="error-box" role="alert"><h1>{escape(title)}</h1><p>{escape(hint)}</p>'
        f'<p class="muted">Error {code} · <a href="/">Go to the start page</a></p></div>'
    )
    if not wants_partial():
        box = (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title></head><body><main>{box}</main></body></html>\n"
        )
    response = make_response(box, code)
    response.vary.update(VARY)
    return response


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    if api.is_api_path(request.path):
        return api_errors.http_error(exc)
    code = exc.code or 500
    if isinstance(exc, _HOST_REFUSED):
        return _error_response(400, BAD_HOST_HINT)
    return _error_response(code if code in MESSAGES else 400)


def _csrf_error(exc: CSRFError) -> ResponseReturnValue:
    """A form whose CSRF token had expired (or never was ours). htmx: reload the page the
    form was on (HX-Current-URL) with the message above a fresh form; that works for every
    htmx form, whatever it swaps. Without JavaScript: the 400 page, with a link back to the
    form's page when the Referer is one of ours."""
    if request.headers.get("HX-Request") == "true":
        flash(FORM_EXPIRED, "error")
        back = page_on_this_site(request.headers.get("HX-Current-URL"))
        response = redirect_to(back or url_for("home.index"))
        response.status_code = 400  # still a refusal in the logs; htmx follows HX-Redirect
        return response
    return _error_response(
        400,
        "This form had expired or came from somewhere else, so nothing was sent.",
        back=page_on_this_site(request.referrer),  # else only "Go to the start page"
    )


def _server_error(exc: Exception) -> ResponseReturnValue:
    # A half-done transaction must not leak into the error page's own queries.
    db.session.rollback()
    current_app.logger.exception(
        "Unhandled error on %s %s", request.method, redact_tokens(request.path)
    )
    if api.is_api_path(request.path):
        return api_errors.http_error(InternalServerError())
    return _error_response(500)


def _refuse_bad_host() -> None:
    """Answer a malformed or untrusted Host with its 400 before any other hook runs: Flask
    only raises it when it dispatches, after the before-request hooks, and those (CSRF,
    sessions, the MFA guard's redirect) would fail or act without a usable host."""
    if isinstance(request.routing_exception, _HOST_REFUSED):
        raise request.routing_exception


def _refuse_control_characters() -> None:
    """NUL and other control characters have no place in a form or query and break
    PostgreSQL text columns; refuse them before any view sees them."""
    try:
        values = [*request.args.values(), *request.form.values()]
    except UnicodeDecodeError as exc:  # pragma: no cover - werkzeug replaces by default
        raise BadRequest() from exc
    if any(_CONTROL_CHARACTER.search(value) for value in values):
        raise BadRequest("Control characters are not allowed.")


# What a page's form sends (htmx too). Nothing here takes JSON, XML or raw bytes.
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _refuse_bodies_that_are_not_forms() -> None:
    """A POST carries a form or nothing; anything else is a 415 before CSRF or a view reads
    it. Flask-WTF would otherwise read a JSON body as the form's fields."""
    if request.method != "POST" or request.mimetype in _FORM_TYPES:
        return
    if request.mimetype or request.content_length:
        raise UnsupportedMediaType()


def _unauthorized() -> ResponseReturnValue:
    if g.get("session_ended"):
        flash("Your session ended. Please sign in again.", "info")
    else:
        flash("Please sign in to continue.", "info")
    target = safe_next(request.full_path.rstrip("?")) if request.method == "GET" else None
    return redirect_to(url_for("auth.sign_in", next=target) if target else url_for("auth.sign_in"))


def guard_requests(app: Flask) -> None:
    """The input guards; called before any extension registers its own before-request hook."""
    app.before_request(_refuse_bad_host)
    app.before_request(_refuse_bodies_that_are_not_forms)
    app.before_request(_refuse_control_characters)


def register(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InternalServerError, _server_error)
    app.register_error_handler(Exception, _server_error)
    login_manager.unauthorized_handler(_unauthorized)
