"""Your ways of getting a code (ACC-2): which one is asked for first, replacing one (a new
phone, a new address or number), removing one. Adding one is the setup wizard."""

from __future__ import annotations

from flask import abort
from flask.typing import ResponseReturnValue
from flask_login import login_required

from blueprints.account import bp
from blueprints.account.forms import RemoveFactorForm
from blueprints.account.security_views import answer, changed, me
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
    return changed(
        "factors",
        f"{kind.label}: asked for first when you sign in.",
        event="mfa.default_changed",
        email=lambda: notify.default_changed(user, kind.label),
        method=factor.kind,
    )


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
    now_default = removed.now_default
    return changed(
        "factors",
        f"{kind.label}: removed." + ("" if now_default else " Two-step sign-in is now off."),
        event="mfa.factor_removed",
        email=lambda: notify.factor_removed(
            user,
            by_admin=False,
            method=kind.label,
            now_default=now_default.label if now_default else None,
        ),
        also=("recovery", "devices"),
        method=kind.name,
        turned_off=now_default is None,
        devices_forgotten=removed.devices_forgotten,
    )
