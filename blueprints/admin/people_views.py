"""The users list and adding a person (ADM-7).

The list is a plain GET form first (search, role, status, sort, page in the query string);
htmx searches as the admin types and swaps only the results, pushing the URL so that Back
and a reload show the same list. Picking and ordering people is ``services.user_list``;
adding one is ``services.invitations``.
"""

from __future__ import annotations

from typing import Any

from flask import flash, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from wtforms import SelectChoice

from blueprints.admin import bp
from blueprints.admin.forms import AddUserForm, UserListForm
from blueprints.auth.fresh import fresh_required
from blueprints.htmx import redirect_to, render
from models import Role, db
from models.types import utcnow
from models.user import ADMINISTRATOR, OVERRIDE_DEFAULT
from services import emailed_links, invitations, policy, rollout, user_list
from services.links import external_url
from services.overrides import OVERRIDE_LABELS

PAGE = "admin/users.html"
RESULTS = "admin/_users_answer.html"


def list_url(query: user_list.Query, **changes: Any) -> str:
    """The list's URL for ``query`` with ``changes`` (say another page), defaults left out so
    that the plain list is just /admin/users."""
    values = {
        "q": query.search.strip(),
        "role": query.role_id,
        "status": query.status,
        "sort": query.sort,
        "dir": "desc" if query.descending else "asc",
        "page": query.page,
        "per_page": query.per_page,
        **changes,
    }
    defaults = user_list.Query()
    plain = {
        "q": "",
        "role": None,
        "status": "",
        "sort": defaults.sort,
        "dir": "asc",
        "page": 1,
        "per_page": defaults.per_page,
    }
    return url_for("admin.users", **{k: v for k, v in values.items() if v != plain[k]})


@bp.get("/users")
def users() -> ResponseReturnValue:
    """Everyone with their role, two-step standing, last sign-in and rule; searchable,
    filtered, sorted and paged. htmx gets the results alone. A value that is not one of the
    choices (a hand-made URL) gets 400 with the form saying which."""
    roles = rollout.roles()
    form = UserListForm(formdata=request.args)
    form.role.choices = [
        SelectChoice("", "Any role"),
        *(SelectChoice(str(role.id), role.name) for role in roles),
    ]
    context: dict[str, Any] = {
        "form": form,
        "list_url": list_url,
        "statuses": user_list.STATUS_LABELS,
        "sorts": user_list.SORT_LABELS,
        "overrides": OVERRIDE_LABELS,
        "default_override": OVERRIDE_DEFAULT,
    }
    if not form.validate():
        return render(PAGE, RESULTS, 400, found=None, **context)
    found = user_list.find(form.query(), policy.current(), utcnow())
    db.session.commit()  # the policy's first read may have created its row
    return render(PAGE, RESULTS, found=found, **context)


def _add_form(roles: list[Role]) -> AddUserForm:
    form = AddUserForm()
    form.role.choices = [SelectChoice(str(role.id), role.name) for role in roles]
    return form


def _render_add(form: AddUserForm, status: int = 200) -> ResponseReturnValue:
    return render(
        "admin/new_user.html",
        "admin/_new_user_form.html",
        status,
        form=form,
        hours=invitations.valid_hours(),
    )


@bp.get("/users/new")
def new_user() -> ResponseReturnValue:
    """The form to add a person: email, name, role, mobile number."""
    roles = rollout.roles()
    form = _add_form(roles)
    # Preselected: the first role that is not Administrator, the safer slip.
    form.role.data = next((str(r.id) for r in roles if r.name != ADMINISTRATOR), None)
    return _render_add(form)


@bp.post("/users/new")
@fresh_required
def new_user_post() -> ResponseReturnValue:
    """Add the person and email them an invitation to choose their password (72 hours).

    Cases: invalid or taken address, or not a mobile number (422, at the field); added and
    emailed (303 or HX-Redirect to their page); added but the mail server refused (their page
    says so, with "Resend invitation"). Audited either way.
    """
    form = _add_form(rollout.roles())
    if not form.validate_on_submit():
        return _render_add(form, 422)
    role = db.session.get(Role, int(form.role.data))
    assert role is not None  # the choices are the roles
    person = invitations.invite(
        email=form.email.data or "",
        full_name=form.full_name.data or "",
        role=role,
        mobile=(form.mobile_number.data or "").strip() or None,
        actor=current_user,
    )
    outgoing = invitations.link_for(
        person,
        lambda token: external_url("auth.open_invitation", token=token),
        actor=current_user,
        sign_in_url=external_url("auth.sign_in"),
    )
    db.session.commit()
    if emailed_links.send_now(outgoing):
        flash(f"{person.display_name} was added and emailed an invitation.", "success")
    else:
        flash(
            f"{person.display_name} was added, but the invitation email could not be sent. "
            "Check the mail server, then use Resend invitation.",
            "error",
        )
    return redirect_to(url_for("admin.user", user_id=person.id))
