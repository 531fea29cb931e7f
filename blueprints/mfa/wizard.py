"""The setup wizard (WIZ-1 to WIZ-5): choose → scan → code → recovery codes → remember → done.

Each step has its own URL and works as a plain form; htmx swaps the step into ``#wizard`` and
keeps the URL in step. Which steps may be opened is read from the server-side setup row
(services/enrolment.py); a URL or form field cannot move it.

Who may use it: a pending sign-in that must (or may) enrol, or a signed-in user adding the app.
After the code is proved, a pending sign-in becomes a signed-in session under a new id.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from blueprints.mfa.forms import ChooseMethodForm, CodeForm, ConfirmForm, RememberForm
from models import ClinicPolicy, MfaSetup, User, UserSession, db
from models.factors import TOTP
from models.sessions import ACTIVE, STEP_SETUP
from services import audit, devices, enrolment, notify, policy, qr, recovery, sessions, totp
from services.policy import METHOD_LABELS

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


def _visitor() -> Visitor | None:
    row = sessions.current()
    if row is None:
        return None
    if row.state != ACTIVE and row.pending_step != STEP_SETUP:
        return None
    return Visitor(user=row.user, row=row, policy=policy.current())


def _steps(visitor: Visitor, setup: MfaSetup | None) -> list[str]:
    """The steps this person will walk, for "Step n of m"."""
    steps = ["choose", "scan", "code"]
    shows_codes = bool(setup and setup.recovery_codes_encrypted) or (
        (setup is None or setup.stage == enrolment.SCAN)
        and recovery.remaining(visitor.user.id) == 0
    )
    if shows_codes:
        steps.append("recovery")
    if visitor.policy.remember_days > 0:
        steps.append("remember")
    return steps


def _page(
    visitor: Visitor, setup: MfaSetup | None, step: str, status: int = 200, **ctx
) -> Response:
    steps = _steps(visitor, setup)
    return render(
        "mfa/setup.html",
        f"mfa/_step_{step}.html",
        status,
        step=step,
        step_number=steps.index(step) + 1 if step in steps else len(steps),
        step_count=len(steps),
        step_template=f"mfa/_step_{step}.html",
        visitor=visitor,
        setup=setup,
        support=visitor.policy.support_contact,
        **ctx,
    )


STAGE_URLS = {
    enrolment.SCAN: "mfa.setup_scan",
    enrolment.RECOVERY: "mfa.setup_recovery",
    enrolment.REMEMBER: "mfa.setup_remember",
    enrolment.DONE: "mfa.setup_done",
}


def _where_to(setup: MfaSetup | None) -> str:
    return url_for(STAGE_URLS[setup.stage]) if setup else url_for("mfa.setup")


def _load(*stages: str) -> tuple[Visitor, MfaSetup] | ResponseReturnValue:
    """The visitor and their setup if it is at one of ``stages``; else where they belong."""
    visitor = _visitor()
    if visitor is None:
        flash("Please sign in to continue.", "info")
        return redirect_to(url_for("auth.sign_in"))
    setup = enrolment.current(visitor.user.id)
    if setup is None or setup.stage not in stages:
        return redirect_to(_where_to(setup))
    return visitor, setup


def _allowed_methods(visitor: Visitor) -> list[SelectChoice]:
    return [SelectChoice(m, METHOD_LABELS[m]) for m in visitor.policy.methods if m in METHOD_LABELS]


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
    enrolment.begin(visitor.user, form.method.data)
    audit.record(
        "mfa.setup_started", actor=visitor.user, subject=visitor.user, method=form.method.data
    )
    db.session.commit()
    return go_to(url_for("mfa.setup_scan"), target="#wizard")


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
def setup_scan() -> ResponseReturnValue:
    """Step 2: the QR code, and the key in groups of four for typing by hand."""
    loaded = _load(enrolment.SCAN)
    if not isinstance(loaded, tuple):
        return loaded
    visitor, setup = loaded
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
def setup_code() -> ResponseReturnValue:
    """Step 3: enter the code the app shows."""
    loaded = _load(enrolment.SCAN)
    if not isinstance(loaded, tuple):
        return loaded
    visitor, setup = loaded
    return _page(visitor, setup, "code", form=CodeForm())


@bp.post("/setup/app/code")
def setup_code_post() -> ResponseReturnValue:
    """Check the code against the secret being set up. Wrong: same step, same secret (422).
    Right: the factor is enrolled, recovery codes made, and a pending sign-in completed."""
    loaded = _load(enrolment.SCAN)
    if not isinstance(loaded, tuple):
        return loaded
    visitor, setup = loaded
    form = CodeForm()
    if not form.validate_on_submit():
        return _page(visitor, setup, "code", 422, form=form)
    code = totp.normalise_code(form.code.data)
    user = visitor.user
    if not enrolment.confirm_totp(
        setup, user, code, remember_offered=visitor.policy.remember_days > 0
    ):
        db.session.rollback()
        audit.record("mfa.setup_code_failed", actor=user, subject=user)
        db.session.commit()
        form.code.errors = [
            "That code did not work. Check the app shows your clinic, then enter the newest code."
        ]
        return _page(visitor, setup, "code", 422, form=form)
    audit.record("mfa.factor_added", actor=user, subject=user, method=TOTP)
    was_pending = visitor.pending
    if was_pending:
        if not sessions.promote(visitor.row, method=TOTP):
            db.session.rollback()
            flash("That took too long. Please enter your password again.", "info")
            return redirect_to(url_for("auth.sign_in"))
        audit.record("sign_in.succeeded", actor=user, subject=user, method=TOTP)
    db.session.commit()
    if was_pending:
        login_user(user)
    notify.factor_added(user, METHOD_LABELS[TOTP])
    db.session.commit()
    return go_to(_where_to(setup), target="#wizard")


@bp.get("/setup/recovery-codes")
def setup_recovery() -> ResponseReturnValue:
    """Step 4: the recovery codes, shown once, with download and print."""
    loaded = _load(enrolment.RECOVERY, enrolment.REMEMBER)
    if not isinstance(loaded, tuple):
        return loaded
    visitor, setup = loaded
    codes = enrolment.recovery_codes(setup)
    if not codes:
        return redirect_to(_where_to(setup))
    return _page(
        visitor, setup, "recovery", form=ConfirmForm(), codes=[recovery.display(c) for c in codes]
    )


@bp.get("/setup/recovery-codes.txt")
def setup_recovery_download() -> ResponseReturnValue:
    """The recovery codes as a text file to save."""
    loaded = _load(enrolment.RECOVERY, enrolment.REMEMBER)
    if not isinstance(loaded, tuple):
        return loaded
    visitor, setup = loaded
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
def setup_recovery_print() -> ResponseReturnValue:
    """A page with just the codes, laid out for paper."""
    loaded = _load(enrolment.RECOVERY, enrolment.REMEMBER)
    if not isinstance(loaded, tuple):
        return loaded
    visitor, setup = loaded
    return render_template(
        "mfa/recovery_print.html",
        codes=[recovery.display(c) for c in enrolment.recovery_codes(setup)],
        user=visitor.user,
    )


@bp.post("/setup/recovery-codes")
def setup_recovery_post() -> ResponseReturnValue:
    """ "I have saved my codes": on to remembering the device, or done."""
    loaded = _load(enrolment.RECOVERY, enrolment.REMEMBER)
    if not isinstance(loaded, tuple):
        return loaded
    visitor, setup = loaded
    target = enrolment.REMEMBER if visitor.policy.remember_days > 0 else enrolment.DONE
    if setup.stage == enrolment.RECOVERY:
        enrolment.move(setup, from_stage=enrolment.RECOVERY, to_stage=target)
        db.session.commit()
    return go_to(_where_to(setup), target="#wizard")


@bp.get("/setup/remember")
def setup_remember() -> ResponseReturnValue:
    """Step 5: remember this device for the policy's number of days (not on shared computers)."""
    loaded = _load(enrolment.REMEMBER)
    if not isinstance(loaded, tuple):
        return loaded
    visitor, setup = loaded
    return _page(visitor, setup, "remember", form=RememberForm(), days=visitor.policy.remember_days)


@bp.post("/setup/remember")
def setup_remember_post() -> ResponseReturnValue:
    """Set the device cookie if asked, then done."""
    loaded = _load(enrolment.REMEMBER)
    if not isinstance(loaded, tuple):
        return loaded
    visitor, setup = loaded
    form = RememberForm()
    if not form.validate_on_submit():
        return _page(visitor, setup, "remember", 422, form=form, days=visitor.policy.remember_days)
    enrolment.move(setup, from_stage=enrolment.REMEMBER, to_stage=enrolment.DONE)
    response = go_to(url_for("mfa.setup_done"), target="#wizard")
    if form.remember.data == "yes" and visitor.policy.remember_days > 0:
        device = devices.remember(response, visitor.user, visitor.policy.remember_days)
        audit.record(
            "device.remembered", actor=visitor.user, subject=visitor.user, label=device.label
        )
    db.session.commit()
    return response


@bp.get("/setup/done")
def setup_done() -> ResponseReturnValue:
    """The end: what happens at the next sign-in."""
    loaded = _load(enrolment.DONE)
    if not isinstance(loaded, tuple):
        return loaded
    visitor, setup = loaded
    return _page(visitor, setup, "done", form=ConfirmForm())


@bp.post("/setup/done")
def setup_done_post() -> ResponseReturnValue:
    """Forget the setup (and the only copy of the codes) and go on."""
    loaded = _load(enrolment.DONE)
    if not isinstance(loaded, tuple):
        return loaded
    visitor, setup = loaded
    enrolment.finish(setup)
    db.session.commit()
    return redirect_to(visitor.row.pending_next or url_for("home.index"))
