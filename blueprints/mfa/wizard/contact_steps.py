"""Email and SMS steps: confirm the address or number (a code is sent to it), then enter it."""

from __future__ import annotations

from flask import Response, abort, url_for
from flask.typing import ResponseReturnValue

from blueprints.htmx import go_to
from blueprints.mfa import bp
from blueprints.mfa.forms import (
    CodeForm,
    ConfirmEmailForm,
    ConfirmForm,
    MobileNumberForm,
    TargetForm,
)
from blueprints.mfa.wizard.flow import TARGET, Visitor, at_stage, page, replacing
from blueprints.mfa.wizard.shared_steps import proved
from models import MfaSetup, db
from models.codes import PURPOSE_SETUP
from models.factors import EMAIL, SMS
from services import audit, codes, enrolment, factor_kinds, factors
from services.sms import mask_number
from services.users import UserInputError

KINDS = "<any(" + ", ".join(k.name for k in factor_kinds.sending_codes()) + "):kind>"
# The form that confirms each kind's target: what the person types differs, not the rule.
CONFIRM_FORMS = {EMAIL: ConfirmEmailForm, SMS: MobileNumberForm}
CODE_VOID = (
    "That code no longer works (too many wrong tries, or it expired), so nothing was "
    "changed. Send a new code to try again."
)


def _kind(setup: MfaSetup) -> factor_kinds.CodeSendingKind:
    kind = factor_kinds.get(setup.kind)
    assert isinstance(kind, factor_kinds.CodeSendingKind)
    return kind


def _form(who: Visitor, setup: MfaSetup) -> TargetForm:
    form = CONFIRM_FORMS[setup.kind]()
    return form if replacing(who, setup) is None else form.for_change()


def _confirm_page(who: Visitor, setup: MfaSetup, status: int = 200, **ctx) -> Response:
    user = who.user
    ctx.setdefault("form", _form(who, setup))
    return page(
        who,
        setup,
        "mfa.setup_contact",
        status,
        partial=_kind(setup).confirm_template,
        profile_number=mask_number(user.mobile_number) if user.mobile_number else None,
        **ctx,
    )


def _send(who: Visitor, setup: MfaSetup, target: str) -> codes.Refused | codes.Failed | None:
    """Send the confirming code; None when it went."""
    result = codes.send_code(who.user, kind=_kind(setup), target=target, purpose=PURPOSE_SETUP)
    return None if isinstance(result, codes.Sent) else result


def _not_sent(response: Response, problem: codes.Refused | codes.Failed) -> Response:
    if isinstance(problem, codes.Refused):
        response.headers["Retry-After"] = str(problem.retry_after)
    return response


def _problem_text(problem: codes.Refused | codes.Failed) -> str:
    if isinstance(problem, codes.Failed):
        return f"{problem.message} Try again in a minute, or go back and choose another method."
    return problem.message


@bp.get(f"/setup/{KINDS}")
@at_stage("mfa.setup_contact")
def setup_contact(who: Visitor, setup: MfaSetup, kind: str) -> ResponseReturnValue:
    """Step 2 for email or SMS: confirm the address (typed again) or the mobile number."""
    return _confirm_page(who, setup)


@bp.post(f"/setup/{KINDS}")
@at_stage("mfa.setup_contact")
def setup_contact_post(who: Visitor, setup: MfaSetup, kind: str) -> ResponseReturnValue:
    """Check the address or number, then send a code to it. Cases: not the profile's address,
    or not a mobile number (422); send limits (429 with Retry-After); mail or SMS gateway down
    (503, nothing saved, other ways offered); sent (on to the code step)."""
    form = _form(who, setup)
    if not form.validate_on_submit():
        return _confirm_page(who, setup, 422, form=form)
    typed_field = form.typed
    current = factors.of_kind(who.user.id, setup.kind)
    try:
        target = _kind(setup).target_for(
            who.user, typed_field.data or "", current=current.target if current else None
        )
    except UserInputError as exc:
        typed_field.errors = [str(exc)]
        return _confirm_page(who, setup, 422, form=form)
    problem = _send(who, setup, target)
    if problem:
        response = _confirm_page(
            who, setup, problem.status, form=form, error=_problem_text(problem)
        )
        return _not_sent(response, problem)
    to_profile = bool(getattr(form, "to_profile", None) and form.to_profile.data)
    enrolment.code_sent(setup, target, to_profile=to_profile)
    db.session.commit()
    return go_to(url_for("mfa.setup_contact_code", kind=kind), target=TARGET)


def _code_page(who: Visitor, setup: MfaSetup, status: int = 200, **ctx) -> Response:
    return page(
        who,
        setup,
        "mfa.setup_contact_code",
        status,
        partial="mfa/_step_contact_code.html",
        sent_to=_kind(setup).shown_as(setup.target),
        resend_in=codes.seconds_until_resend(who.user.id, PURPOSE_SETUP),
        resend_form=ConfirmForm(),
        **ctx,
    )


@bp.get(f"/setup/{KINDS}/code")
@at_stage("mfa.setup_contact_code")
def setup_contact_code(who: Visitor, setup: MfaSetup, kind: str) -> ResponseReturnValue:
    """Step 3 for email or SMS: enter the code that was sent."""
    return _code_page(who, setup, form=CodeForm())


@bp.post(f"/setup/{KINDS}/code")
@at_stage("mfa.setup_contact_code")
def setup_contact_code_post(who: Visitor, setup: MfaSetup, kind: str) -> ResponseReturnValue:
    """Check the code sent to the address or number; a wrong one uses up one of its tries
    (counted once, by ``codes.verify``, and kept)."""
    form = CodeForm()
    if not form.validate_on_submit():
        return _code_page(who, setup, 422, form=form)
    enrolled = enrolment.confirm(
        setup, who.user, form.code.data, remember_offered=who.remember_days > 0
    )
    if enrolled is None:
        audit.record("mfa.setup_code_failed", actor=who.user, subject=who.user, method=kind)
        db.session.commit()
        # Its fifth wrong try (or its expiry) has voided the code, and with it this change.
        dead = not codes.has_active_code(who.user.id, PURPOSE_SETUP, None)
        form.code.errors = [CODE_VOID if dead else _kind(setup).wrong_setup_code]
        return _code_page(who, setup, 422, form=form)
    return proved(who, setup, enrolled)


@bp.post(f"/setup/{KINDS}/resend")
@at_stage("mfa.setup_contact_code")
def setup_contact_resend(who: Visitor, setup: MfaSetup, kind: str) -> ResponseReturnValue:
    """Send a new code to the same address or number; the old code stops working."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    problem = _send(who, setup, setup.target or "")
    if problem:
        response = _code_page(
            who, setup, problem.status, form=CodeForm(), error=_problem_text(problem)
        )
        return _not_sent(response, problem)
    return go_to(url_for("mfa.setup_contact_code", kind=kind), target=TARGET)
