"""Authenticator-app steps: scan the QR code (or type the key), then enter a code."""

from __future__ import annotations

from flask import current_app
from flask.typing import ResponseReturnValue

from blueprints.mfa import bp
from blueprints.mfa.forms import CodeForm
from blueprints.mfa.wizard.flow import Visitor, at_stage, page
from blueprints.mfa.wizard.shared_steps import proved
from models import MfaSetup, db
from services import audit, enrolment, factor_kinds, qr, totp


@bp.get("/setup/app")
@at_stage("mfa.setup_scan")
def setup_scan(who: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Step 2: the QR code, and the key in groups of four for typing by hand."""
    secret = enrolment.secret_of(setup)
    issuer = current_app.config["MFA_CLINIC_NAME"]
    uri = totp.provisioning_uri(secret, who.user.email, issuer)
    return page(
        who,
        setup,
        "mfa.setup_scan",
        partial="mfa/_step_scan.html",
        qr_svg=qr.svg(uri, title=f"QR code to add {issuer} to your authenticator app"),
        grouped_key=totp.group_secret(secret),
        issuer=issuer,
    )


def _code_page(who: Visitor, setup: MfaSetup, form: CodeForm, status: int = 200):
    return page(who, setup, "mfa.setup_code", status, partial="mfa/_step_code.html", form=form)


@bp.get("/setup/app/code")
@at_stage("mfa.setup_code")
def setup_code(who: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Step 3: enter the code the app shows."""
    return _code_page(who, setup, CodeForm())


@bp.post("/setup/app/code")
@at_stage("mfa.setup_code")
def setup_code_post(who: Visitor, setup: MfaSetup) -> ResponseReturnValue:
    """Check the code against the secret being set up. Wrong: same step, same secret (422).
    Right: the factor is enrolled (replacing an older app only now), and on (see ``proved``)."""
    form = CodeForm()
    if not form.validate_on_submit():
        return _code_page(who, setup, form, 422)
    enrolled = enrolment.confirm(
        setup, who.user, form.code.data, remember_offered=who.remember_days > 0
    )
    if enrolled is None:
        audit.record("mfa.setup_code_failed", actor=who.user, subject=who.user, method=setup.kind)
        db.session.commit()
        form.code.errors = [factor_kinds.get(setup.kind).wrong_setup_code]
        return _code_page(who, setup, form, 422)
    return proved(who, setup, enrolled)
