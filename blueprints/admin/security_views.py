"""The clinic's security settings (ADM-2, ADM-3, ADM-5, DEV-2, DEV-3, WIZ-5).

Routes stay thin: rules live in services/policy.py (settings), services/rollout.py (roles),
services/impact.py (what a change would do) and services/readiness.py (the counts). Every
change needs a fresh sign-in and is audited with who, before and after.
"""

from __future__ import annotations

from flask import abort, flash, redirect, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm

from blueprints.admin import bp
from blueprints.admin.forms import RolePolicyForm, SecuritySettingsForm
from blueprints.auth.fresh import fresh_required
from blueprints.htmx import redirect_to, render, wants_partial
from models import ClinicPolicy, Role, db
from models.user import OVERRIDE_DEFAULT
from services import audit, factor_kinds, impact, localtime, policy, readiness, rollout
from services.policy import PolicyError

PAGE = "admin/security.html"


@bp.get("")
def index() -> ResponseReturnValue:
    return redirect(url_for("admin.security"), code=303)


def _settings_form(clinic: ClinicPolicy) -> SecuritySettingsForm:
    # formdata=None: after a save the posted form (with its "confirmed") must not refill it.
    values = {**policy.snapshot(clinic), "methods": list(clinic.methods)}
    return SecuritySettingsForm(formdata=None, data=values)


def _role_form(role: Role, formdata: bool = False) -> RolePolicyForm:
    prefix = f"role-{role.id}"
    if formdata:
        return RolePolicyForm(prefix=prefix)
    return RolePolicyForm(
        prefix=prefix,
        formdata=None,
        data={"mode": role.mfa_mode, "required_from": role.mfa_required_from},
    )


def _page_context(clinic: ClinicPolicy) -> dict[str, object]:
    """What the whole page shows besides the settings form: each role with its form and
    counts, and the people with an override."""
    everyone = readiness.people()
    counts = readiness.by_role(clinic, everyone)
    roles = rollout.roles()
    return {
        "clinic": clinic,
        "roles": [(role, _role_form(role), counts.get(role.id)) for role in roles],
        "standings": readiness.STANDINGS,
        "excepted": [p.user for p in everyone if p.user.mfa_override != OVERRIDE_DEFAULT],
        "today": localtime.today(),
    }


def _attach(form: FlaskForm, error: PolicyError) -> None:
    """Show a service's refusal at the field it names (or above the form)."""
    field = getattr(form, error.field or "", None)
    if field is not None:
        field.errors = [*field.errors, str(error)]
    else:
        form.form_errors.append(str(error))


@bp.get("/security")
def security() -> ResponseReturnValue:
    """The settings page: the clinic's rule, methods, devices and locations, and the rollout
    by role."""
    clinic = policy.current()
    db.session.commit()
    return render(PAGE, PAGE, form=_settings_form(clinic), **_page_context(clinic))


@bp.post("/security")
@fresh_required
def security_post() -> ResponseReturnValue:
    """Save the settings. A change that switches a method off, makes two-step sign-in
    required or allows SMS first shows what it will do and asks to confirm (ADM-5): as a
    partial with htmx, as its own page without JavaScript."""
    clinic = policy.current()
    form = SecuritySettingsForm()
    # "yes" from the confirmation's Save, "back" from its Go back; never shown again.
    answer, form.confirmed.data = form.confirmed.data, ""
    if not form.validate_on_submit():
        return _settings_answer(form, clinic, 422)
    try:
        values = policy.validated(**form.values())
    except PolicyError as error:
        _attach(form, error)
        return _settings_answer(form, clinic, 422)
    if answer == "back":
        return _settings_answer(form, clinic, 200)
    effect = impact.preview(clinic, values)
    if effect.needs_confirming and answer != "yes":
        kinds = {kind.name: kind for kind in factor_kinds.enrollable()}
        return render(
            "admin/confirm.html", "admin/_confirm.html", form=form, impact=effect, kinds=kinds
        )
    change = policy.update(**form.values())
    audit.record_change(
        "admin.policy_changed", change, actor=current_user, **_impact_details(effect)
    )
    db.session.commit()
    message = "Settings saved." if change.after else "Nothing changed."
    if not wants_partial():
        flash(message, "success")
        return redirect_to(url_for("admin.security"))
    return _settings_answer(_settings_form(clinic), clinic, 200, saved=message, with_roles=True)


def _impact_details(effect: impact.Impact) -> dict[str, int]:
    if not effect.needs_confirming:
        return {}
    return {
        "losing_only_factor": effect.losing_only_factor,
        "not_enrolled": effect.not_enrolled,
        "without_mobile": len(effect.without_mobile),
    }


def _settings_answer(
    form: SecuritySettingsForm,
    clinic: ClinicPolicy,
    status: int,
    *,
    saved: str | None = None,
    with_roles: bool = False,
) -> ResponseReturnValue:
    """The settings form again: the partial for htmx (with the role counts out of band after
    a save, since methods decide who counts as enrolled), else the whole page."""
    context = _page_context(clinic) if with_roles or not wants_partial() else {}
    return render(
        PAGE,
        "admin/_settings_answer.html",
        status,
        form=form,
        saved=saved,
        with_roles=with_roles,
        **context,
    )


@bp.post("/security/roles/<int:role_id>")
@fresh_required
def role_post(role_id: int) -> ResponseReturnValue:
    """Set one role's rule and go-live date (ADM-3)."""
    role = db.session.get(Role, role_id)
    if role is None:
        abort(404)
    clinic = policy.current()
    form = _role_form(role, formdata=True)
    status = 422
    saved = None
    if form.validate_on_submit():
        try:
            change = rollout.set_role(role, form.mode.data, form.required_from.data)
        except PolicyError as error:
            _attach(form, error)
        else:
            audit.record_change(
                "admin.role_policy_changed", change, actor=current_user, role=role.name
            )
            db.session.commit()
            saved = f"{role.name}: saved." if change.after else f"{role.name}: nothing changed."
            if not wants_partial():
                flash(saved, "success")
                return redirect_to(url_for("admin.security", _anchor=f"role-{role.id}"))
            form = _role_form(role)
            status = 200
    if not wants_partial():
        return render(
            PAGE,
            PAGE,
            status,
            form=_settings_form(clinic),
            **_with_role_form(_page_context(clinic), role, form),
        )
    counts = readiness.by_role(clinic).get(role.id)
    return render(
        PAGE,
        "admin/_role.html",
        status,
        role=role,
        role_form=form,
        counts=counts,
        standings=readiness.STANDINGS,
        clinic=clinic,
        today=localtime.today(),
        saved=saved,
    )


def _with_role_form(
    context: dict[str, object], role: Role, form: RolePolicyForm
) -> dict[str, object]:
    """The page's context with ``role``'s form replaced by the one posted (with its errors)."""
    roles = context["roles"]
    assert isinstance(roles, list)
    context["roles"] = [(r, form if r.id == role.id else f, c) for r, f, c in roles]
    return context
