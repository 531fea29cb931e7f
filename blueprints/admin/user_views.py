"""One person, as an administrator sees them (ADM-4, ADM-6, ADM-7, DEV-3; seeds 002, 003,
004): their account and what lets them in (factors, locks, a bypass, an invitation), the
actions on their access (``user_actions``), and their rules: override, same-location choice
and the mobile number on their profile (the one the wizard offers for text messages)."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from blueprints.admin import bp
from blueprints.admin.forms import UserRulesForm
from blueprints.admin.user_actions import ACTIONS
from blueprints.auth.fresh import fresh_required
from blueprints.htmx import redirect_to, render, wants_partial
from models import User, db
from services import audit, factor_kinds, notify, overrides, policy, requirement, staff
from services.factors import for_user as factors_of
from services.policy import PolicyError
from services.users import UserInputError, by_email, normalise_mobile

PAGE = "admin/user.html"
PARTIAL = "admin/_user_rules.html"


def _person(user_id: int) -> User:
    user = db.session.get(User, user_id)
    # API users have their own page (Admin → API access); staff rules mean nothing for them.
    if user is None or not user.is_person:
        abort(404)
    return user


def _render(user: User, form: UserRulesForm, status: int = 200, **extra: object):
    clinic = policy.current()
    access = staff.access_of(user)
    return render(
        PAGE,
        PARTIAL,
        status,
        person=user,
        form=form,
        needs=requirement.of(user, clinic),
        factors=[(factor, factor_kinds.get(factor.kind)) for factor in factors_of(user.id)],
        access=access,
        actions=[action for action in ACTIONS if action.offered(user, access)],
        **extra,
    )


def _form_for(user: User) -> UserRulesForm:
    return UserRulesForm(
        formdata=None,
        data={
            "override": user.mfa_override,
            "same_location": overrides.same_location_choice(user),
            "mobile_number": user.mobile_number or "",
        },
    )


@bp.get("/users/find")
def find_user() -> ResponseReturnValue:
    """Open one person's page by email address (the security page's "Set a rule for one
    person"; the users page searches by name too)."""
    email = request.args.get("email", "")[:254]
    user = by_email(email) if email.strip() else None
    if user is None or not user.is_person:
        flash("Nobody has that email address.", "error")
        return redirect(url_for("admin.security", _anchor="exceptions-heading"), code=303)
    return redirect(url_for("admin.user", user_id=user.id), code=303)


@bp.get("/users/<int:user_id>")
def user(user_id: int) -> ResponseReturnValue:
    """One person's page: their account, what lets them in, the actions and their rules."""
    person = _person(user_id)
    response = _render(person, _form_for(person))
    db.session.commit()
    return response


@bp.post("/users/<int:user_id>")
@fresh_required
def user_post(user_id: int) -> ResponseReturnValue:
    """Save the person's rules and mobile number; audited with before and after. A new number
    is told to the person, as when they change it themselves."""
    person = _person(user_id)
    form = UserRulesForm()
    if not form.validate_on_submit():
        return _render(person, form, 422)
    raw_number = (form.mobile_number.data or "").strip()
    try:
        number = normalise_mobile(raw_number) if raw_number else None
        change = overrides.set_for(
            person, override=form.override.data, same_location=form.same_location.data
        )
    except UserInputError as error:
        form.mobile_number.errors = [str(error)]
        return _render(person, form, 422)
    except PolicyError as error:
        getattr(form, error.field or "override").errors = [str(error)]
        return _render(person, form, 422)
    old_number = person.mobile_number
    person.mobile_number = number
    audit.record_change("admin.user_rules_changed", change, actor=current_user, subject=person)
    if number != old_number:
        audit.record("user.mobile_changed", actor=current_user, subject=person, via="admin")
    db.session.commit()
    if number and number != old_number:
        notify.mobile_changed(person, number)
        db.session.commit()
    saved = "Saved." if change.after or number != old_number else "Nothing changed."
    if not wants_partial():
        flash(saved, "success")
        return redirect_to(url_for("admin.user", user_id=person.id))
    return _render(person, _form_for(person), saved=saved)
