"""The setup wizard (WIZ-1 to WIZ-5): choose → scan → code → recovery codes → remember → done.

Each step has its own URL and works as a plain form; htmx swaps the step into ``#wizard`` and
keeps the URL in step. Which steps may be opened is read from the server-side setup row
(services/enrolment.py); a URL or form field cannot move it.

Who may use it: a pending sign-in that must (or may) enrol, or a signed-in user adding the app.
After the code is proved, a pending sign-in becomes a signed-in session under a new id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from flask import (
    Response,
    abort,
    current_app,
    flash,
    make_response,
    render_template,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import login_user
from wtforms import SelectChoice

from blueprints.htmx import go_to, redirect_to, render
from blueprints.mfa import bp
from blueprints.mfa.forms import (
    ChooseMethodForm,
    CodeForm,
    ConfirmEmailForm,
    ConfirmForm,
    MobileNumberForm,
    RememberForm,
)
from models import ClinicPolicy, MfaSetup, User, UserSession, db
from models.codes import PURPOSE_SETUP
from models.factors import EMAIL, TOTP
from models.sessions import ACTIVE, STEP_SETUP
from services import audit, codes, devices, enrolment, notify, policy, qr, recovery, sessions, totp
from services.mail import DeliveryError
from services.policy import METHOD_LABELS, methods_for, remember_days_for
from services.sms import mask_number
from services.users import UserInputError, normalise_mobile

RECOMMENDED_APPS = ("Microsoft Authenticator", "Google Authenticator", "Authy")


@dataclass
class Visitor:
    """Who is in the wizard and how they got here."""

    user: User
    row: UserSession
    policy: ClinicPolicy

    @property
    def pending(self) -> bool:
        return self.row.state != ACTIVE

    @property
    def remember_days(self) -> int:
        """Days this person may have this device remembered; 0 when not offered."""
        return remember_days_for(self.user, self.policy)


def _visitor() -> Visitor | None:
    row = sessions.current()
    if row is None:
        return None
    if row.state != ACTIVE and row.pending_step != STEP_SETUP:
        return None
    return Visitor(user=row.user, row=row, policy=policy.current())


def _steps(visitor: Visitor, setup: MfaSetup | None) -> list[str]:
    """The steps this person will walk, for "Step n of m"."""
    first = "scan" if setup is None or setup.kind == TOTP else "confirm"
    steps = ["choose", first, "code"]
    shows_codes = bool(setup and setup.recovery_codes_encrypted) or (
        (setup is None or setup.stage in (enrolment.SCAN, enrolment.CONFIRM, enrolment.CODE))
        and recovery.remaining(visitor.user.id) == 0
    )
    if shows_codes:
        steps.append("recovery")
    if visitor.remember_days > 0:
        steps.append("remember")
    return steps


def _page(
    visitor: Visitor,
    setup: MfaSetup | None,
    step: str,
    status: int = 200,
    *,
    template: str | None = None,
    **ctx,
) -> Response:
    """Render a step; ``step`` names it for "Step n of m", ``template`` picks its partial."""
    steps = _steps(visitor, setup)
    partial = f"mfa/_step_{template or step}.html"
    return render(
        "mfa/setup.html",
        partial,
        status,
        step=step,
        step_number=steps.index(step) + 1 if step in steps else len(steps),
        step_count=len(steps),
        step_template=partial,
        visitor=visitor,
        setup=setup,
        support=visitor.policy.support_contact,
        **ctx,
    )


STAGE_URLS = {
    enrolment.SCAN: "mfa.setup_scan",
    enrolment.CONFIRM: "mfa.setup_contact",
    enrolment.CODE: "mfa.setup_contact_code",
    enrolment.RECOVERY: "mfa.setup_recovery",
    enrolment.REMEMBER: "mfa.setup_remember",
    enrolment.DONE: "mfa.setup_done",
}


def _where_to(setup: MfaSetup | None) -> str:
    if setup is None:
        return url_for("mfa.setup")
    if setup.stage in (enrolment.CONFIRM, enrolment.CODE):
        return url_for(STAGE_URLS[setup.stage], kind=setup.kind)
    return url_for(STAGE_URLS[setup.stage])


def _load(*stages: str, kind: str | None = None) -> tuple[Visitor, MfaSetup] | ResponseReturnValue:
    """The visitor and their setup if it is at one of ``stages`` (and of ``kind``); else a
    redirect to where they belong."""
    visitor = _visitor()
    if visitor is None:
        flash("Please sign in to continue.", "info")
        return redirect_to(url_for("auth.sign_in"))
    setup = enrolment.current(visitor.user.id)
    if setup is None or setup.stage not in stages or (kind and setup.kind != kind):
        return redirect_to(_where_to(setup))
    return visitor, setup


def at_stage(
    *stages: str,
) -> Callable[[Callable[..., ResponseReturnValue]], Callable[..., ResponseReturnValue]]:
    """Open a step only while the setup is at one of ``stages`` (and of the URL's ``kind``);
    otherwise send the visitor to where they belong. The view gets (visitor, setup, ...)."""

    def decorate(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
        @wraps(view)
        def step(**kwargs: str) -> ResponseReturnValue:
            loaded = _load(*stages, kind=kwargs.get("kind"))
            if not isinstance(loaded, tuple):
                return loaded
            return view(*loaded, **kwargs)

        return step

    return decorate


def _allowed_methods(visitor: Visitor) -> list[SelectChoice]:
    return [SelectChoice(m, METHOD_LABELS[m]) for m in methods_for(visitor.user, visitor.policy)]


@bp.get("/setup")
def setup() -> ResponseReturnValue:
    """Step 1: choose a method (only the ones the policy allows)."""
    visitor = _visitor()
    if visitor is None:
        flash("Please sign in to continue.", "info")
        return redirect_to(url_for("auth.sign_in"))
    form = ChooseMethodForm()
    form.method.choices = _allowed_methods(visitor)
    form.method.data = form.method.data or TOTP
    return _page(
        visitor, enrolment.current(visitor.user.id), "choose", form=form, apps=RECOMMENDED_APPS
    )


@bp.post("/setup")
def setup_post() -> ResponseReturnValue:
    """Start (or start again) with the chosen method: a new secret is made on the server."""
    visitor = _visitor()
    if visitor is None:
        return redirect_to(url_for("auth.sign_in"))
    form = ChooseMethodForm()
    form.method.choices = _allowed_methods(visitor)
    if not form.validate_on_submit():
        return _page(visitor, None, "choose", 422, form=form, apps=RECOMMENDED_APPS)
    setup = enrolment.begin(visitor.user, form.method.data)
    audit.record(
        "mfa.setup_started", actor=visitor.user, subject=visitor.user, method=form.method.data
    )
    db.session.commit()
    return go_to(_where_to(setup), target="#wizard")


@bp.post("/setup/decline")
def setup_decline() -> ResponseReturnValue:
    """ "Don't use multi-factor authentication": only while the policy lets this sign-in skip."""
    visitor = _visitor()
    if visitor is None or not visitor.pending or not visitor.row.setup_skippable:
        abort(403)
    if not sessions.promote(visitor.row, method="none"):
        return redirect_to(url_for("auth.sign_in"))
    audit.record("mfa.setup_declined", actor=visitor.user, subject=visitor.user)
    audit.record("sign_in.succeeded", actor=visitor.user, subject=visitor.user, method="none")
    db.session.commit()
    login_user(visitor.user)
    return redirect_to(visitor.row.pending_next or url_for("home.index"))


@bp.get("/setup/app")
@at_stage(enrolment.SCAN)
def setup_scan(visitor: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Step 2: the QR code, and the key in groups of four for typing by hand."""
    secret = enrolment.secret_of(setup)
    issuer = current_app.config["MFA_CLINIC_NAME"]
    uri = totp.provisioning_uri(secret, visitor.user.email, issuer)
    return _page(
        visitor,
        setup,
        "scan",
        qr_svg=qr.svg(uri, title=f"QR code to add {issuer} to your authenticator app"),
        grouped_key=totp.group_secret(secret),
        issuer=issuer,
    )


@bp.get("/setup/app/code")
@at_stage(enrolment.SCAN)
def setup_code(visitor: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Step 3: enter the code the app shows."""
    return _page(visitor, setup, "code", form=CodeForm())


@bp.post("/setup/app/code")
@at_stage(enrolment.SCAN)
def setup_code_post(visitor: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Check the code against the secret being set up. Wrong: same step, same secret (422).
    Right: the factor is enrolled, recovery codes made, and a pending sign-in completed."""
    form = CodeForm()
    if not form.validate_on_submit():
        return _page(visitor, setup, "code", 422, form=form)
    code = totp.normalise_code(form.code.data)
    user = visitor.user
    if not enrolment.confirm_totp(setup, user, code, remember_offered=visitor.remember_days > 0):
        db.session.rollback()
        audit.record("mfa.setup_code_failed", actor=user, subject=user)
        db.session.commit()
        form.code.errors = [
            "That code did not work. Check the app shows your clinic, then enter the newest code."
        ]
        return _page(visitor, setup, "code", 422, form=form)
    return _enrolled(visitor, setup)


def _enrolled(visitor: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """After a factor is proved: audit, complete a pending sign-in, tell the user, go on."""
    user = visitor.user
    audit.record("mfa.factor_added", actor=user, subject=user, method=setup.kind)
    was_pending = visitor.pending
    if was_pending:
        if not sessions.promote(visitor.row, method=setup.kind):
            db.session.rollback()
            flash("That took too long. Please enter your password again.", "info")
            return redirect_to(url_for("auth.sign_in"))
        audit.record("sign_in.succeeded", actor=user, subject=user, method=setup.kind)
    # Sessions opened without this factor no longer meet the bar it sets (AUTH-6).
    sessions.end_all_for(user.id, reason="factor_added", keep=visitor.row)
    db.session.commit()
    if was_pending:
        login_user(user)
    notify.factor_added(user, METHOD_LABELS[setup.kind])
    db.session.commit()
    return go_to(_where_to(setup), target="#wizard")


CONTACT_KINDS = "<any(email, sms):kind>"


def _contact_page(visitor: Visitor, setup: MfaSetup, status: int = 200, **ctx) -> Response:
    user = visitor.user
    if setup.kind == EMAIL:
        ctx.setdefault("form", ConfirmEmailForm())
    else:
        ctx.setdefault("form", MobileNumberForm())
        ctx.setdefault(
            "profile_number", mask_number(user.mobile_number) if user.mobile_number else None
        )
    return _page(visitor, setup, "confirm", status, template=f"confirm_{setup.kind}", **ctx)


@dataclass(frozen=True)
class _NotSent:
    """Why the confirming code did not go: refused by the limits (429, with the seconds to
    wait) or the mail server or gateway failed (503)."""

    message: str
    status: int
    retry_after: int | None = None

    def apply(self, response: Response) -> Response:
        if self.retry_after is not None:
            response.headers["Retry-After"] = str(self.retry_after)
        return response


def _send_setup_code(visitor: Visitor, setup: MfaSetup, target: str) -> _NotSent | None:
    """Send the confirming code; None when it went."""
    try:
        codes.send_code(visitor.user, channel=setup.kind, target=target, purpose=PURPOSE_SETUP)
    except codes.SendRefused as refused:
        return _NotSent(refused.message, 429, refused.retry_after)
    except DeliveryError:
        what = "the email" if setup.kind == EMAIL else "the text message"
        return _NotSent(
            f"We could not send {what} just now. Try again in a minute, or go back and choose "
            "another method.",
            503,
        )
    return None


@bp.get(f"/setup/{CONTACT_KINDS}")
@at_stage(enrolment.CONFIRM, enrolment.CODE)
def setup_contact(visitor: Visitor, setup: MfaSetup, kind: str) -> ResponseReturnValue:
    """Step 2 for email or SMS: confirm the address (typed again) or the mobile number."""
    return _contact_page(visitor, setup)


@bp.post(f"/setup/{CONTACT_KINDS}")
@at_stage(enrolment.CONFIRM, enrolment.CODE)
def setup_contact_post(visitor: Visitor, setup: MfaSetup, kind: str) -> ResponseReturnValue:
    """Check the address or number, then send a code to it. Cases: not the profile's
    address, or not a mobile number (422); send limits (429); mail or SMS gateway down (503,
    nothing saved, other ways offered); sent (on to the code step)."""
    user = visitor.user
    form = ConfirmEmailForm() if kind == EMAIL else MobileNumberForm()
    if not form.validate_on_submit():
        return _contact_page(visitor, setup, 422, form=form)
    if kind == EMAIL:
        typed = (form.email.data or "").strip().lower()
        if typed != user.email:
            form.email.errors = [
                "That is not the email address on your account. Check it and try again."
            ]
            return _contact_page(visitor, setup, 422, form=form)
        target = user.email
    else:
        raw = (form.number.data or "").strip()
        try:
            target = normalise_mobile(raw) if raw else (user.mobile_number or "")
        except UserInputError as exc:
            form.number.errors = [str(exc)]
            return _contact_page(visitor, setup, 422, form=form)
        if not target:
            form.number.errors = ["Enter your mobile number."]
            return _contact_page(visitor, setup, 422, form=form)
    problem = _send_setup_code(visitor, setup, target)
    if problem:
        return problem.apply(
            _contact_page(visitor, setup, problem.status, form=form, error=problem.message)
        )
    enrolment.code_sent(setup, target)
    db.session.commit()
    return go_to(url_for("mfa.setup_contact_code", kind=kind), target="#wizard")


@bp.get(f"/setup/{CONTACT_KINDS}/code")
@at_stage(enrolment.CODE)
def setup_contact_code(visitor: Visitor, setup: MfaSetup, kind: str) -> ResponseReturnValue:
    """Step 3 for email or SMS: enter the code that was sent."""
    return _code_page(visitor, setup, form=CodeForm())


def _code_page(visitor: Visitor, setup: MfaSetup, status: int = 200, **ctx) -> Response:
    return _page(
        visitor,
        setup,
        "code",
        status,
        template="contact_code",
        sent_to=codes.shown_as(setup.kind, setup.target or ""),
        resend_in=codes.seconds_until_resend(visitor.user.id, PURPOSE_SETUP),
        resend_form=ConfirmForm(),
        **ctx,
    )


@bp.post(f"/setup/{CONTACT_KINDS}/code")
@at_stage(enrolment.CODE)
def setup_contact_code_post(visitor: Visitor, setup: MfaSetup, kind: str) -> ResponseReturnValue:
    """Check the code sent to the address or number; wrong ones use up the code's tries."""
    form = CodeForm()
    if not form.validate_on_submit():
        return _code_page(visitor, setup, 422, form=form)
    user = visitor.user
    code = totp.normalise_code(form.code.data)
    if not enrolment.confirm_code(setup, user, code, remember_offered=visitor.remember_days > 0):
        # Only the code's count of wrong tries was written, and it must stick.
        audit.record("mfa.setup_code_failed", actor=user, subject=user, method=kind)
        db.session.commit()
        form.code.errors = ["That code did not work. Check the newest message, or send a new code."]
        return _code_page(visitor, setup, 422, form=form)
    return _enrolled(visitor, setup)


@bp.post(f"/setup/{CONTACT_KINDS}/resend")
@at_stage(enrolment.CODE)
def setup_contact_resend(visitor: Visitor, setup: MfaSetup, kind: str) -> ResponseReturnValue:
    """Send a new code to the same address or number; the old code stops working."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    problem = _send_setup_code(visitor, setup, setup.target or "")
    if problem:
        return problem.apply(
            _code_page(visitor, setup, problem.status, form=CodeForm(), error=problem.message)
        )
    return go_to(url_for("mfa.setup_contact_code", kind=kind), target="#wizard")


@bp.get("/setup/recovery-codes")
@at_stage(enrolment.RECOVERY, enrolment.REMEMBER)
def setup_recovery(visitor: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Step 4: the recovery codes, shown once, with download and print."""
    shown = enrolment.recovery_codes(setup)
    if not shown:
        return redirect_to(_where_to(setup))
    return _page(
        visitor, setup, "recovery", form=ConfirmForm(), codes=[recovery.display(c) for c in shown]
    )


@bp.get("/setup/recovery-codes.txt")
@at_stage(enrolment.RECOVERY, enrolment.REMEMBER)
def setup_recovery_download(visitor: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """The recovery codes as a text file to save."""
    body = render_template(
        "mfa/recovery_codes.txt",
        codes=[recovery.display(c) for c in enrolment.recovery_codes(setup)],
        user=visitor.user,
    )
    response = make_response(body)
    response.mimetype = "text/plain"
    response.headers["Content-Disposition"] = 'attachment; filename="recovery-codes.txt"'
    return response


@bp.get("/setup/recovery-codes/print")
@at_stage(enrolment.RECOVERY, enrolment.REMEMBER)
def setup_recovery_print(visitor: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """A page with just the codes, laid out for paper."""
    return render_template(
        "mfa/recovery_print.html",
        codes=[recovery.display(c) for c in enrolment.recovery_codes(setup)],
        user=visitor.user,
    )


@bp.post("/setup/recovery-codes")
@at_stage(enrolment.RECOVERY, enrolment.REMEMBER)
def setup_recovery_post(visitor: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """ "I have saved my codes": on to remembering the device, or done."""
    target = enrolment.REMEMBER if visitor.remember_days > 0 else enrolment.DONE
    if setup.stage == enrolment.RECOVERY:
        enrolment.move(setup, from_stage=enrolment.RECOVERY, to_stage=target)
        db.session.commit()
    return go_to(_where_to(setup), target="#wizard")


@bp.get("/setup/remember")
@at_stage(enrolment.REMEMBER)
def setup_remember(visitor: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Step 5: remember this device for the policy's number of days (not on shared computers)."""
    return _page(visitor, setup, "remember", form=RememberForm(), days=visitor.remember_days)


@bp.post("/setup/remember")
@at_stage(enrolment.REMEMBER)
def setup_remember_post(visitor: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Set the device cookie if asked, then done."""
    form = RememberForm()
    if not form.validate_on_submit():
        return _page(visitor, setup, "remember", 422, form=form, days=visitor.remember_days)
    enrolment.move(setup, from_stage=enrolment.REMEMBER, to_stage=enrolment.DONE)
    response = go_to(url_for("mfa.setup_done"), target="#wizard")
    device = None
    if form.remember.data == "yes" and visitor.remember_days > 0:
        device = devices.remember(response, visitor.user, visitor.remember_days)
        audit.record(
            "device.remembered", actor=visitor.user, subject=visitor.user, label=device.label
        )
    db.session.commit()
    if device is not None:
        notify.device_remembered(visitor.user, device)
        db.session.commit()
    return response


@bp.get("/setup/done")
@at_stage(enrolment.DONE)
def setup_done(visitor: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """The end: what happens at the next sign-in."""
    return _page(visitor, setup, "done", form=ConfirmForm())


@bp.post("/setup/done")
@at_stage(enrolment.DONE)
def setup_done_post(visitor: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Forget the setup (and the only copy of the codes) and go on."""
    enrolment.finish(setup)
    db.session.commit()
    return redirect_to(visitor.row.pending_next or url_for("home.index"))
