"""API access (ADM-10, seed 003): API users and their tokens, apart from the staff.

Routes stay thin: the rules (names, roles, labels, the 1-year cap, the hash, revoking once)
live in services/api_access.py, which also audits. Every change needs a fresh sign-in and a
CSRF token; a revoke is confirmed first. A new token's secret is in the answer to the POST
that made it and nowhere else: not in a redirect, a cookie or htmx's history cache.
"""

from __future__ import annotations

from flask import abort, flash, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from blueprints.admin import bp
from blueprints.admin.forms import ApiTokenForm, ApiUserForm, ConfirmForm
from blueprints.auth.fresh import fresh_required
from blueprints.htmx import redirect_to, render, wants_partial
from models import ApiToken, User, db
from models.types import utcnow
from services import api_access
from services.api_access import ApiAccessError

PAGE = "admin/api.html"
PARTIAL = "admin/_api.html"


def _user_form(formdata: bool = False) -> ApiUserForm:
    form = (
        ApiUserForm()
        if formdata
        else ApiUserForm(formdata=None, data={"role": api_access.DEFAULT_ROLE})
    )
    form.role.choices = api_access.role_choices()
    return form


def _token_form(user: User, formdata: bool = False) -> ApiTokenForm:
    prefix = f"user-{user.id}"
    if formdata:
        return ApiTokenForm(prefix=prefix)
    return ApiTokenForm(prefix=prefix, formdata=None)


def _render(
    status: int = 200,
    *,
    user_form: ApiUserForm | None = None,
    token_form: tuple[int, ApiTokenForm] | None = None,
    **extra: object,
) -> ResponseReturnValue:
    """The page (or, for htmx, the part under the heading): every API user with their tokens
    and a new-token form, and the new-user form; a form just posted keeps its errors."""
    users = api_access.api_users()
    tokens = api_access.tokens_by_user([user.id for user in users])
    rows = []
    for user in users:
        form = token_form[1] if token_form and token_form[0] == user.id else _token_form(user)
        rows.append((user, tokens.get(user.id, []), form))
    return render(
        PAGE,
        PARTIAL,
        status,
        api_users=rows,
        user_form=user_form or _user_form(),
        now=utcnow(),
        **extra,
    )


def _done(message: str) -> ResponseReturnValue:
    """After a change: a plain form is redirected to the page with the message (303); htmx
    gets the fresh list with it."""
    db.session.commit()
    if not wants_partial():
        flash(message, "success")
        return redirect_to(url_for("admin.api"))
    return _render(saved=message)


def _api_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None or user.is_person:
        abort(404)
    return user


@bp.get("/api")
def api() -> ResponseReturnValue:
    """API users and their tokens."""
    response = _render()
    db.session.commit()
    return response


@bp.post("/api/users")
@fresh_required
def api_user_post() -> ResponseReturnValue:
    """Create an API user (a name and a role for reports)."""
    form = _user_form(formdata=True)
    if not form.validate_on_submit():
        return _render(422, user_form=form)
    try:
        user = api_access.create_user(form.name.data or "", form.role.data, by=current_user)
    except ApiAccessError as error:
        getattr(form, error.field or "name").errors = [str(error)]
        db.session.rollback()
        return _render(422, user_form=form)
    return _done(f"API user {user.full_name} created. Now create a token for it.")


@bp.post("/api/users/<int:user_id>/tokens")
@fresh_required
def api_token_post(user_id: int) -> ResponseReturnValue:
    """Create a token and show its secret, this once (200 with the secret, never a redirect:
    it would have to carry the secret)."""
    user = _api_user(user_id)
    form = _token_form(user, formdata=True)
    if not form.validate_on_submit():
        return _render(422, token_form=(user.id, form))
    try:
        issued = api_access.issue(user, form.label.data or "", form.days.data, by=current_user)
    except ApiAccessError as error:
        getattr(form, error.field or "label").errors = [str(error)]
        db.session.rollback()
        return _render(422, token_form=(user.id, form))
    db.session.commit()
    return _render(issued=issued)


@bp.post("/api/tokens/<int:token_id>/revoke")
@fresh_required
def api_token_revoke_post(token_id: int) -> ResponseReturnValue:
    """Revoke a token. Without ``confirmed=yes``: what it will do, and the button that does it
    (a partial for htmx, a page without JavaScript). With it: revoked from now on."""
    token = db.session.get(ApiToken, token_id)
    if token is None:
        abort(404)
    form = ConfirmForm()
    if not form.validate_on_submit() or form.confirmed.data != "yes":
        return render(
            "admin/api_confirm.html",
            "admin/_api_confirm.html",
            token=token,
            form=ConfirmForm(formdata=None, data={"confirmed": "yes"}),
        )
    if api_access.revoke(token, by=current_user):
        return _done(f"Token “{token.label}” of {token.user.full_name} revoked.")
    return _done(f"Token “{token.label}” of {token.user.full_name} was already revoked.")
