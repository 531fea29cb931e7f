"""The API's answers when it says no: JSON ``{"error": code, "message": words}``, never a page.

401s follow RFC 6750: ``WWW-Authenticate: Bearer realm="clinic-mfa"``, with
``error="invalid_token"`` when a token was sent and is no good, and no error code when none
was sent at all. Every other refusal under ``/api/`` (400, 404, 405, 429, 500 ...) comes
through ``http_error``, so a client never has to parse HTML.
"""

from __future__ import annotations

from flask import Response, jsonify
from werkzeug.exceptions import HTTPException

from services.api_access import Refused
from services.api_limits import Over

REALM = "clinic-mfa"
# Codes by status for refusals that carry no code of their own.
CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "server_error",
}
MESSAGES = {
    400: "The request was not understood.",
    404: "There is nothing at this address. The API's description is at /api/v1/openapi.json.",
    405: "This address only answers GET.",
    413: "The request was too large.",
    415: "The API takes no request body.",
    500: "Something went wrong on our side. Try again; if it keeps happening, tell the IT person.",
}


def problem(status: int, code: str, message: str) -> Response:
    response = jsonify(error=code, message=message)
    response.status_code = status
    return response


def refused(refusal: Refused) -> Response:
    """401 for a request whose token opens nothing, saying why."""
    response = problem(401, refusal.error or "unauthorized", refusal.message)
    challenge = f'Bearer realm="{REALM}"'
    if refusal.error:
        # The message is ours and plain ASCII without quotes, so it is safe inside the header.
        challenge += f', error="{refusal.error}", error_description="{refusal.message}"'
    response.headers["WWW-Authenticate"] = challenge
    return response


def too_many(over: Over) -> Response:
    wait = over.retry_after
    response = problem(
        429,
        CODES[429],
        f"At most {over.limit.amount} requests per {_window(over)} for one token. "
        f"Try again in {wait} second{'s' if wait != 1 else ''}.",
    )
    response.headers["Retry-After"] = str(wait)
    return response


def _window(over: Over) -> str:
    seconds = over.limit.get_expiry()
    names = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
    return names.get(seconds, f"{seconds} seconds")


def http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status not in CODES:
        status = 400 if status < 500 else 500
    response = problem(status, CODES[status], MESSAGES.get(status, MESSAGES[400]))
    if status == 405:
        response.headers["Allow"] = "GET, HEAD, OPTIONS"
    return response
