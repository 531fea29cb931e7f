"""Steps every kind walks: choose a method, "don't use it", recovery codes, remember, done;
and what happens once a factor is proved (``proved``)."""

from __future__ import annotations

from flask import abort, flash, url_for
from flask.typing import ResponseReturnValue
from wtforms import SelectChoice

from blueprints.auth.completion import complete_sign_in
from blueprints.auth.fresh import fresh_required
from blueprints.htmx import go_to, redirect_to
from blueprints.mfa import bp, recovery_files
from blueprints.mfa.forms import ChooseMethodForm, ConfirmForm, RememberForm
from blueprints.mfa.wizard.flow import (
    TARGET,
    Visitor,
    at_stage,
    page,
    to_sign_in,
    visitor,
    where_to,
)
from models import MfaSetup, db
from services import (
    audit,
    devices,
    enrolment,
    factor_kinds,
    factors,
    locations,
    notify,
    recovery,
    sessions,
)
from services.policy import methods_for


def _choices(who: Visitor) -> list[SelectChoice]:
    return [
        SelectChoice(name, factor_kinds.get(name).label)
        for name in methods_for(who.user, who.policy)
    ]


def _choose_page(who: Visitor, form: ChooseMethodForm, status: int = 200) -> ResponseReturnValue:
    return page(
        who,
        enrolment.current(who.user.id),
        "mfa.setup",
        status,
        partial="mfa/_step_choose.html",
        form=form,
        kinds={kind.name: kind for kind in factor_kinds.enrollable()},
        had={factor.kind for factor in factors.for_user(who.user.id)},
    )


def _first_choice(who: Visitor) -> str:
    """The method selected to begin with: the strongest allowed one the person has none of
    yet (adding a second way), else the strongest allowed one."""
    allowed = methods_for(who.user, who.policy)
    had = {factor.kind for factor in factors.for_user(who.user.id)}
    return next((name for name in allowed if name not in had), allowed[0] if allowed else "")


@bp.get("/setup")
@fresh_required
def setup() -> ResponseReturnValue:
    """Step 1: choose a method (only the ones the policy allows)."""
    who = visitor()
    if who is None:
        return to_sign_in()
    form = ChooseMethodForm()
    form.method.choices = _choices(who)
    form.method.data = form.method.data or _first_choice(who)
    return _choose_page(who, form)


@bp.post("/setup")
@fresh_required
def setup_post() -> ResponseReturnValue:
    """Start (or start again) with the chosen method: a new secret is made on the server."""
    who = visitor()
    if who is None:
        return to_sign_in()
    form = ChooseMethodForm()
    form.method.choices = _choices(who)
    if not form.validate_on_submit():
        return _choose_page(who, form, 422)
    started = enrolment.begin(who.user, form.method.data, adding=not who.pending)
    audit.record("mfa.setup_started", actor=who.user, subject=who.user, method=started.kind)
    db.session.commit()
    return go_to(where_to(started), target=TARGET)


@bp.post("/setup/decline")
def setup_decline() -> ResponseReturnValue:
    """ "Don't use two-step sign-in", or "Skip for now" before a go-live date: only while the
    policy lets this sign-in skip it, then and now (a date may have passed since)."""
    who = visitor()
    if who is None or not who.pending or not who.row.setup_skippable:
        abort(403)
    needs = who.requirement
    if not needs.skippable:
        abort(403)
    if needs.required_from is not None:
        audit.record(
            "mfa.setup_postponed",
            actor=who.user,
            subject=who.user,
            required_from=needs.required_from.isoformat(),
        )
    else:
        audit.record("mfa.setup_declined", actor=who.user, subject=who.user)
    response = complete_sign_in(who.user, method="none", pending=who.row)
    return response if response is not None else to_sign_in()


def proved(who: Visitor, setup: MfaSetup, enrolled: enrolment.Enrolled) -> ResponseReturnValue:
    """After a factor is proved: audit; a pending sign-in is completed; the user's other
    sessions end (they were opened without it, or with the factor it replaces) and a replaced
    factor's remembered devices are forgotten (AUTH-6, DEV-2); the user is emailed; on to the
    next step. A completed sign-in moves on by a full page, so the header shows who is in."""
    user = who.user
    audit.record(
        "mfa.factor_replaced" if enrolled.replaced else "mfa.factor_added",
        actor=user,
        subject=user,
        method=enrolled.kind.name,
    )
    if enrolled.target_changed:
        audit.record("mfa.code_target_changed", actor=user, subject=user, method=enrolled.kind.name)
    if enrolled.profile_number:
        audit.record("user.mobile_changed", actor=user, subject=user, via="sms_setup")
    sessions.end_all_for(user.id, reason="factor_changed", keep=who.row)
    locations.forget_all(user.id)
    if enrolled.replaced:
        devices.revoke_all(user.id)
    if who.pending:
        response = complete_sign_in(
            user, method=enrolled.kind.name, pending=who.row, then=where_to(setup)
        )
        if response is None:
            return to_sign_in()
    else:
        db.session.commit()
        response = go_to(where_to(setup), target=TARGET)
    kind = enrolled.kind
    if enrolled.target_changed and isinstance(kind, factor_kinds.CodeSendingKind):
        # The old address or number is told (an old address by email to it): whoever used
        # it should know codes no longer go there.
        assert enrolled.old_target is not None and enrolled.target is not None
        notify.code_target_changed(
            user,
            target_noun=kind.target_noun,
            old_shown=kind.shown_as(enrolled.old_target) or "",
            new_shown=kind.shown_as(enrolled.target) or "",
            old_mailbox=kind.mailbox(enrolled.old_target),
        )
    else:
        notify.factor_added(user, kind.label, replaced=enrolled.replaced)
    if enrolled.profile_number:
        notify.mobile_changed(user, enrolled.profile_number)
    db.session.commit()
    return response


def _codes_of(setup: MfaSetup) -> list[str]:
    return [recovery.display(c) for c in enrolment.recovery_codes(setup)]


@bp.get("/setup/recovery-codes")
@at_stage("mfa.setup_recovery")
def setup_recovery(who: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Step 4: the recovery codes, shown once, with download and print."""
    shown = _codes_of(setup)
    if not shown:
        return redirect_to(where_to(setup))
    return page(
        who,
        setup,
        "mfa.setup_recovery",
        partial="mfa/_step_recovery.html",
        form=ConfirmForm(),
        codes=shown,
    )


@bp.get("/setup/recovery-codes.txt")
@at_stage("mfa.setup_recovery")
def setup_recovery_download(who: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """The recovery codes as a text file to save."""
    return recovery_files.download(_codes_of(setup), who.user, factor_kinds.get(setup.kind))


@bp.get("/setup/recovery-codes/print")
@at_stage("mfa.setup_recovery")
def setup_recovery_print(who: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """A page with just the codes, laid out for paper."""
    return recovery_files.printable(_codes_of(setup), who.user, factor_kinds.get(setup.kind))


@bp.post("/setup/recovery-codes")
@at_stage("mfa.setup_recovery")
def setup_recovery_post(who: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """ "I have saved my codes": on to remembering the device, or done."""
    if setup.stage == enrolment.RECOVERY:
        upcoming = enrolment.after_recovery(remember_offered=who.remember_days > 0)
        enrolment.move(setup, from_stage=enrolment.RECOVERY, to_stage=upcoming)
        db.session.commit()
    return go_to(where_to(setup), target=TARGET)


def _remember_page(who: Visitor, setup: MfaSetup, form: RememberForm, status: int = 200):
    return page(
        who,
        setup,
        "mfa.setup_remember",
        status,
        partial="mfa/_step_remember.html",
        form=form,
        days=who.remember_days,
    )


@bp.get("/setup/remember")
@at_stage("mfa.setup_remember")
def setup_remember(who: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Step 5: remember this device for the policy's number of days (not on shared computers)."""
    return _remember_page(who, setup, RememberForm())


@bp.post("/setup/remember")
@at_stage("mfa.setup_remember")
def setup_remember_post(who: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Set the device cookie if asked (and allowed), then done."""
    form = RememberForm()
    if not form.validate_on_submit():
        return _remember_page(who, setup, form, 422)
    enrolment.move(setup, from_stage=enrolment.REMEMBER, to_stage=enrolment.DONE)
    response = go_to(url_for("mfa.setup_done"), target=TARGET)
    device = None
    if form.remember.data == "yes" and who.remember_days > 0:
        device = devices.remember(response, who.user, who.remember_days)
        audit.record("device.remembered", actor=who.user, subject=who.user, label=device.label)
    db.session.commit()
    if device is not None:
        notify.device_remembered(who.user, device)
        db.session.commit()
    return response


@bp.get("/setup/done")
@at_stage("mfa.setup_done")
def setup_done(who: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """The end: what happens at the next sign-in."""
    return page(who, setup, "mfa.setup_done", partial="mfa/_step_done.html", form=ConfirmForm())


@bp.post("/setup/done")
@at_stage("mfa.setup_done")
def setup_done_post(who: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Forget the setup (and the only copy of the codes) and go on: back to the security
    page when the person came from there (adding), else where the sign-in was going."""
    enrolment.finish(setup)
    db.session.commit()
    if setup.adding:
        flash(factor_kinds.get(setup.kind).set_up_message, "success")
        return redirect_to(url_for("account.security"))
    return redirect_to(who.row.pending_next or url_for("home.index"))
