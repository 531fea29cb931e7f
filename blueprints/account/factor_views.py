"""Your ways of getting a code (ACC-2): which one is asked for first, replacing one (a new
phone, a new address or number), removing one. Adding one is the setup wizard."""

from __future__ import annotations

from flask import abort
from flask.typing import ResponseReturnValue
from flask_login import login_required

from blueprints.account import bp
from blueprints.account.forms import RemoveFactorForm
from blueprints.account.security_views import answer, me
from blueprints.auth.fresh import fresh_required
from blueprints.htmx import redirect_to, render
from blueprints.mfa.wizard.flow import where_to
from models import MfaFactor, User, db
from services import account, audit, factor_kinds, factors, notify, policy, requirement
from services.requirement import Requirement


def _own(user: User, factor_id: int) -> tuple[MfaFactor, Requirement]:
    """The factor if it is this person's (else 404), and what the policy asks of them."""
    factor = factors.own(user.id, factor_id)
    if factor is None:
        abort(404)
    return factor, requirement.of(user, policy.current())


@bp.post("/security/factors/<int:factor_id>/default")
@login_required
@fresh_required
def make_default(factor_id: int) -> ResponseReturnValue:
    """Ask for this one first at sign-in; refused (409) for a kind the policy forbids now."""
    user, _ = me()
    factor, needs = _own(user, factor_id)
    kind = factor_kinds.get(factor.kind)
    try:
        account.set_default(user, factor, needs)
    except account.Refused as refusal:
        db.session.rollback()
        return answer("factors", str(refusal), status=409)
    audit.record("mfa.default_changed", actor=user, subject=user, method=factor.kind)
    db.session.commit()
    notify.default_changed(user, kind.label)
    db.session.commit()
    return answer("factors", f"{kind.label}: asked for first when you sign in.")


@bp.post("/security/factors/<int:factor_id>/replace")
@login_required
@fresh_required
def replace(factor_id: int) -> ResponseReturnValue:
    """Start the setup that replaces this one once the new one is proved: the app on a new
    phone, a new address or number. The old one keeps working until then."""
    user, _ = me()
    factor, needs = _own(user, factor_id)
    try:
        setup = account.start_replacing(user, factor, needs)
    except account.Refused as refusal:
        db.session.rollback()
        return answer("factors", str(refusal), status=409)
    audit.record("mfa.setup_started", actor=user, subject=user, method=setup.kind, replacing=True)
    db.session.commit()
    return redirect_to(where_to(setup))


@bp.post("/security/factors/<int:factor_id>/remove")
@login_required
@fresh_required
def remove(factor_id: int) -> ResponseReturnValue:
    """Remove one way of getting a code. Cases: someone else's (404); the last usable one
    while two-step sign-in is required for you (409, nothing changed); the last usable one
    otherwise: first a page saying two-step sign-in will be off, then, confirmed, removed;
    any other: removed at once. Remembered devices are forgotten either way (DEV-2)."""
    user, _ = me()
    factor, needs = _own(user, factor_id)
    kind = factor_kinds.get(factor.kind)
    removal = account.removal_of(factor, needs, factors.for_user(user.id))
    if removal.turns_off and not removal.refused and RemoveFactorForm().confirmed.data != "yes":
        return render(
            "account/turn_off.html",
            "account/_turn_off.html",
            factor=factor,
            kind=kind,
            form=RemoveFactorForm(),
        )
    try:
        removed = account.remove_factor(user, factor, needs)
    except account.Refused as refusal:
        db.session.rollback()
        return answer("factors", str(refusal), status=409)
    turned_off = removed.now_default is None
    audit.record(
        "mfa.factor_removed",
        actor=user,
        subject=user,
        method=kind.name,
        turned_off=turned_off,
        devices_forgotten=removed.devices_forgotten,
    )
    db.session.commit()
    notify.factor_removed(
        user,
        by_admin=False,
        method=kind.label,
        now_default=None if turned_off else removed.now_default.label,
    )
    db.session.commit()
    message = f"{kind.label}: removed." + (" Two-step sign-in is now off." if turned_off else "")
    return answer("factors", message, also=("recovery", "devices"))
