"""The API's routes: the users list for compliance reports, and its own description."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache, wraps
from typing import Any

from flask import Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from blueprints.api import bp, errors
from models import db
from services import api_access, api_limits, directory
from services.links import external_url


def token_required(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Run ``view`` for a live token within its rate limit; 401 or 429 (JSON) otherwise.

    In this order: the token is checked (a refused one costs one indexed read and creates
    nothing), its last use is noted (at most once a minute), then the request is counted
    against the token's limit.
    """

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        try:
            token = api_access.authenticate(request.headers.get("Authorization"))
        except api_access.Refused as refusal:
            db.session.rollback()
            current_app.logger.info("API request refused: %s", refusal.reason)
            return errors.refused(refusal)
        api_access.touch(token)
        over = api_limits.hit(token.id)
        if over is not None:
            return errors.too_many(over)
        g.api_token = token
        return view(*args, **kwargs)

    return guarded


class BadParameter(ValueError):
    pass


def _whole_number(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18 and low <= int(raw) <= high):
        raise BadParameter(f"{name} must be a whole number from {low} to {high}.")
    return int(raw)


def _timestamp(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _entry(entry: directory.Entry) -> dict[str, Any]:
    user = entry.user
    return {
        "id": user.id,
        "email": user.email,
        "name": user.full_name,
        "role": user.role.name,
        "kind": user.kind,
        "active": user.active,
        "mfa": {"status": entry.standing, "methods": list(entry.methods)},
        "last_sign_in": _timestamp(entry.last_sign_in),
    }


@bp.get("/users")
@token_required
def users() -> ResponseReturnValue:
    """Everyone, API users included, a page at a time in id order: ``?limit=`` (1 to 200,
    default 50) and ``?after=`` (the last id seen); ``next`` links to the following page and
    is null on the last."""
    try:
        after = _whole_number("after", 0, 0, 2**62)
        size = _whole_number("limit", directory.DEFAULT_PAGE, 1, directory.MAX_PAGE)
    except BadParameter as exc:
        return errors.problem(400, "invalid_request", str(exc))
    page = directory.page(after, size)
    db.session.commit()
    following = (
        external_url("api.users", after=page.next_after, limit=size)
        if page.next_after is not None
        else None
    )
    return jsonify(users=[_entry(e) for e in page.entries], next=following)


@cache
def _description() -> bytes:
    with bp.open_resource("openapi.json") as handle:
        return handle.read()


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """The API's OpenAPI 3.1 description; no token needed to read it."""
    return Response(_description(), mimetype="application/json")
