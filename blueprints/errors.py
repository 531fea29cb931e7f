"""Error pages that work as full pages and as htmx partials, and the input guard (SEC-3)."""

from __future__ import annotations

from flask import Flask, current_app, flash, g, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError

from blueprints.htmx import redirect_to, render
from models import db
from services.redirects import safe_next

MESSAGES = {
    400: ("Something in that request was not right", "Go back, reload the page and try again."),
    403: ("You cannot open this page", "Your account does not have access to it."),
    404: ("Page not found", "Check the address, or go back to the start page."),
    405: ("That action is not available here", "Go back and use the buttons on the page."),
    413: ("That was too much to send", "Shorten what you entered and try again."),
    422: ("Some details need fixing", "Go back, check what you entered and try again."),
    429: ("Too many attempts", "Wait a little, then try again."),
    500: (
        "Something went wrong on our side",
        "Try again. If it keeps happening, tell your IT person.",
    ),
}


def _error_response(status: int, detail: str | None = None) -> ResponseReturnValue:
    title, hint = MESSAGES.get(status, MESSAGES[400])
    return render(
        "errors/page.html",
        "errors/_error.html",
        status,
        code=status,
        title=title,
        hint=detail or hint,
    )


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    code = exc.code or 500
    return _error_response(code if code in MESSAGES else 400)


def _csrf_error(exc: CSRFError) -> ResponseReturnValue:
    return _error_response(
        400, "This form had expired or came from somewhere else. Reload the page and try again."
    )


def _server_error(exc: Exception) -> ResponseReturnValue:
    # A half-done transaction must not leak into the error page's own queries.
    db.session.rollback()
    current_app.logger.exception("Unhandled error on %s %s", request.method, request.path)
    return _error_response(500)


def _refuse_control_characters() -> None:
    """NUL and other control characters have no place in a form or query and break
    PostgreSQL text columns; refuse them before any view sees them."""
    try:
        values = [*request.args.values(), *request.form.values()]
    except UnicodeDecodeError as exc:  # pragma: no cover - werkzeug replaces by default
        raise BadRequest() from exc
    for value in values:
        if any(ord(ch) < 0x20 and ch not in "\t\r\n" for ch in value):
            raise BadRequest("Control characters are not allowed.")


def _unauthorized() -> ResponseReturnValue:
    if g.get("session_ended"):
        flash("Your session ended. Please sign in again.", "info")
    else:
        flash("Please sign in to continue.", "info")
    target = safe_next(request.full_path.rstrip("?")) if request.method == "GET" else None
    return redirect_to(url_for("auth.sign_in", next=target) if target else url_for("auth.sign_in"))


def register(app: Flask) -> None:
    from app import login_manager

    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InternalServerError, _server_error)
    app.register_error_handler(Exception, _server_error)
    app.before_request(_refuse_control_characters)
    login_manager.unauthorized_handler(_unauthorized)
