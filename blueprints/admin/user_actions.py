"""What an admin can do to one person's access from their page (ADM-6, ADM-7): change their
role, grant a one-time bypass, reset two-step sign-in, unlock, forget remembered devices,
sign them out everywhere, switch the account off or on, resend an invitation.

Every action is two steps at its own URL, ``/admin/users/<id>/<action>``: GET shows what it
will do and asks to confirm (a partial swapped into the person's page with htmx, its own page
without JavaScript); POST does it. Each POST needs a fresh sign-in and the CSRF token, is
audited with who, whom and what, and emails the person when it changes their access. The
rules are in services (staff, bypass, account, invitations); a refusal comes back as a 422
with its message on the confirmation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Response, abort, flash, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectChoice

from blueprints.admin import bp
from blueprints.admin.forms import BypassForm, ConfirmForm, RoleForm
from blueprints.auth.fresh import fresh_required
from blueprints.htmx import redirect_to, render
from models import Role, User, db
from services import (
    account,
    audit,
    bypass,
    emailed_links,
    invitations,
    localtime,
    notify,
    rollout,
    staff,
)
from services.links import external_url
from services.users import UserInputError
from services.wording import plural


@dataclass(frozen=True)
class Action:
    name: str  # the endpoint is admin.user_<name>; its words in admin/_user_action.html
    slug: str  # the last segment of the URL
    label: str  # the button on the person's page
    form: Callable[[User], FlaskForm]
    # Does it and says what happened (flashed on the person's page); audits and emails.
    run: Callable[[User, FlaskForm], str]
    # Whether the person's page offers it now (the URL answers either way).
    offered: Callable[[User, staff.Access], bool]


def _role_form(person: User) -> RoleForm:
    form = RoleForm()
    form.role.choices = [SelectChoice(str(role.id), role.name) for role in rollout.roles()]
    if request.method == "GET":  # a POST without a role is refused, not read as "no change"
        form.role.data = str(person.role_id)
    return form


def _change_role(person: User, form: FlaskForm) -> str:
    role = db.session.get(Role, int(form.role.data))
    assert role is not None  # the choices are the roles
    change = staff.change_role(current_user, person, role)
    if not change.after:
        return f"{person.display_name} is already {role.name}."
    audit.record(
        "admin.role_changed",
        actor=current_user,
        subject=person,
        before=change.before,
        after=change.after,
    )
    db.session.commit()
    notify.changed_by_admin(
        person, "role_changed", by=current_user, before=change.before["role"], after=role.name
    )
    return f"{person.display_name} is now {role.name}; they were signed out everywhere."


def _grant_bypass(person: User, form: FlaskForm) -> str:
    until = bypass.grant(person, form.hours.data, actor=current_user)
    audit.record(
        "admin.bypass_granted",
        actor=current_user,
        subject=person,
        hours=form.hours.data,
        until=until.isoformat(),
    )
    db.session.commit()
    notify.changed_by_admin(person, "bypass_granted", by=current_user, until=localtime.when(until))
    return (
        f"{person.display_name} may sign in once without a code until "
        f"{localtime.when(until)}, straight into setting it up again."
    )


def _reset_mfa(person: User, form: FlaskForm) -> str:
    account.reset_mfa(person)
    audit.record("mfa.reset", actor=current_user, subject=person, via="admin")
    db.session.commit()
    notify.factor_removed(person, by_admin=True)
    return f"Two-step sign-in was reset for {person.display_name}; they were signed out."


def _unlock(person: User, form: FlaskForm) -> str:
    unlocked = account.unlock(person.email)
    what = [
        name
        for name, done in (("password", unlocked.password), ("code", unlocked.second_factor))
        if done
    ]
    audit.record(
        "user.unlocked",
        actor=current_user,
        subject=person,
        via="admin",
        password=unlocked.password,
        second_factor=unlocked.second_factor,
    )
    db.session.commit()
    if not what:
        return f"Nothing was locked for {person.display_name}."
    words = " and ".join({"password": "password", "code": "sign-in code"}[w] for w in what)
    notify.changed_by_admin(person, "unlocked", by=current_user, what=words)
    return f"Unlocked {person.display_name}'s {words}."


def _forget_devices(person: User, form: FlaskForm) -> str:
    forgotten, ended = account.forget_devices(person)
    audit.record(
        "admin.devices_forgotten",
        actor=current_user,
        subject=person,
        devices=forgotten,
        sessions=ended,
    )
    db.session.commit()
    if not forgotten:
        return f"{person.display_name} had no remembered devices."
    notify.changed_by_admin(person, "devices_forgotten", by=current_user)
    return f"Forgot {plural(forgotten, 'remembered device')}; they were signed out everywhere."


def _sign_out_everywhere(person: User, form: FlaskForm) -> str:
    ended = account.sign_out_everywhere(person)
    audit.record("admin.signed_out_everywhere", actor=current_user, subject=person, sessions=ended)
    db.session.commit()
    notify.changed_by_admin(person, "signed_out_everywhere", by=current_user)
    return f"{person.display_name} was signed out everywhere."


def _switch(person: User, *, on: bool) -> str:
    """Deactivate (``on`` False) or reactivate the account."""
    name = person.display_name
    changed = staff.reactivate(person) if on else staff.deactivate(current_user, person)
    if not changed:
        return f"{name}'s account was already {'on' if on else 'switched off'}."
    audit.record(
        "admin.user_reactivated" if on else "admin.user_deactivated",
        actor=current_user,
        subject=person,
        before={"active": not on},
        after={"active": on},
    )
    db.session.commit()
    notify.changed_by_admin(person, "reactivated" if on else "deactivated", by=current_user)
    if on:
        return f"{name}'s account is switched on again."
    return f"{name}'s account is switched off; they were signed out everywhere."


def _deactivate(person: User, form: FlaskForm) -> str:
    return _switch(person, on=False)


def _reactivate(person: User, form: FlaskForm) -> str:
    return _switch(person, on=True)


def _resend_invitation(person: User, form: FlaskForm) -> str:
    outgoing = invitations.link_for(
        person,
        lambda token: external_url("auth.open_invitation", token=token),
        actor=current_user,
        sign_in_url=external_url("auth.sign_in"),
    )
    audit.record("admin.invitation_resent", actor=current_user, subject=person)
    db.session.commit()
    if not emailed_links.send_now(outgoing):
        raise UserInputError(
            "The invitation email could not be sent: the mail server refused it or is down. "
            "The earlier link no longer works; try again once mail works."
        )
    return f"A new invitation went to {person.email}; the earlier link no longer works."


def _confirm(person: User) -> ConfirmForm:
    return ConfirmForm()


def _bypass_form(person: User) -> BypassForm:
    return BypassForm()


def _can_sign_in(person: User, access: staff.Access) -> bool:
    return person.active and not person.invited


ACTIONS = (
    Action("role", "role", "Change role", _role_form, _change_role, lambda p, a: True),
    Action(
        "bypass",
        "bypass",
        "Let them sign in once without a code",
        _bypass_form,
        _grant_bypass,
        _can_sign_in,
    ),
    Action("reset_mfa", "reset-mfa", "Reset two-step sign-in", _confirm, _reset_mfa, _can_sign_in),
    Action("unlock", "unlock", "Unlock", _confirm, _unlock, lambda p, a: a.locked),
    Action(
        "forget_devices",
        "forget-devices",
        "Forget remembered devices",
        _confirm,
        _forget_devices,
        lambda p, a: a.devices > 0,
    ),
    Action(
        "sign_out",
        "sign-out-everywhere",
        "Sign out everywhere",
        _confirm,
        _sign_out_everywhere,
        lambda p, a: a.sessions > 0 or a.addresses > 0,
    ),
    Action(
        "deactivate",
        "deactivate",
        "Deactivate",
        _confirm,
        _deactivate,
        lambda p, a: p.active and p.id != current_user.id,
    ),
    Action(
        "reactivate", "reactivate", "Reactivate", _confirm, _reactivate, lambda p, a: not p.active
    ),
    Action(
        "invitation",
        "resend-invitation",
        "Resend invitation",
        _confirm,
        _resend_invitation,
        lambda p, a: p.active and p.invited,
    ),
)
BY_NAME = {action.name: action for action in ACTIONS}


def _person(user_id: int) -> User:
    person = db.session.get(User, user_id)
    if person is None:
        abort(404)
    return person


def _confirmation(action: Action, person: User, form: FlaskForm, status: int = 200) -> Response:
    return render(
        "admin/user_action.html",
        "admin/_user_action.html",
        status,
        action=action,
        person=person,
        form=form,
        access=staff.access_of(person),
        bypass_hours=bypass.MAX_HOURS,
    )


def _show(action: Action, user_id: int) -> ResponseReturnValue:
    person = _person(user_id)
    response = _confirmation(action, person, action.form(person))
    db.session.commit()
    return response


def _do(action: Action, user_id: int) -> ResponseReturnValue:
    person = _person(user_id)
    form = action.form(person)
    if not form.validate_on_submit():
        return _confirmation(action, person, form, 422)
    try:
        done = action.run(person, form)
    except UserInputError as refusal:
        db.session.rollback()
        form.form_errors.append(str(refusal))
        return _confirmation(action, _person(user_id), form, 422)
    flash(done, "success")
    return redirect_to(url_for("admin.user", user_id=person.id))


def _register(action: Action) -> None:
    def show(user_id: int) -> ResponseReturnValue:
        return _show(action, user_id)

    def do(user_id: int) -> ResponseReturnValue:
        return _do(action, user_id)

    show.__doc__ = f"Ask to confirm: {action.label.lower()} (a partial for htmx)."
    do.__doc__ = f"{action.label} for this person, then back to their page."
    rule = f"/users/<int:user_id>/{action.slug}"
    bp.add_url_rule(rule, f"user_{action.name}", fresh_required(show), methods=["GET"])
    bp.add_url_rule(rule, f"user_{action.name}_post", fresh_required(do), methods=["POST"])


for _action in ACTIONS:
    _register(_action)
