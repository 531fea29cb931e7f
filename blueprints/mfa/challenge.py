"""The sign-in challenge: a code from an enrolled factor, or a recovery code.

The method being asked for is kept on the pending session row; the code form carries only the
code, so no edited field can switch to a method the user lacks or the policy forbids.
"""

from __future__ import annotations

import math

from flask import abort, flash, g, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_user
from sqlalchemy import select

from blueprints.htmx import redirect_to, render
from blueprints.mfa import bp
from blueprints.mfa.forms import ChallengeForm, ConfirmForm, RecoveryCodeForm
from models import MfaFactor, UserSession, db
from models.codes import PURPOSE_SIGN_IN
from models.factors import TOTP
from models.sessions import STEP_CHALLENGE
from models.types import utcnow
from services import audit, codes, factors, notify, policy, sessions, signin, totp, wrong_codes
from services import recovery as recovery_codes
from services.challenge import CODE_CHANNELS, SWITCH_LABELS, deliver_sign_in_code
from services.devices import remember, revoke_all
from services.wording import plural

WRONG_CODE = {
    TOTP: "That code did not work. Check the newest code in your app and try again.",
    "sent": "That code did not work. Check the newest message and try again.",
}
WRONG_RECOVERY = "That recovery code did not work. Check it and try again."


def _pending_challenge() -> UserSession | None:
    row = sessions.pending()
    return row if row is not None and row.pending_step == STEP_CHALLENGE else None


def _back_to_sign_in() -> ResponseReturnValue:
    if g.get("session_ended") == "pending_expired":
        flash("That took too long. Please enter your password again.", "info")
    else:
        flash("Please sign in to continue.", "info")
    return redirect_to(url_for("auth.sign_in"))


def _lock_message(lock: wrong_codes.Lock) -> str:
    if lock.until is None:
        return "Your sign-in codes are locked. Ask your clinic's administrator to unlock them."
    minutes = max(1, math.ceil((lock.until - utcnow()).total_seconds() / 60))
    return (
        f"Too many wrong codes. Your sign-in codes are locked for {plural(minutes, 'more minute')}."
    )


def _factor(row: UserSession) -> MfaFactor | None:
    """The factor being asked for. The default one came with the session row (no query)."""
    default = row.user.default_factor
    method = row.mfa_method or (default.kind if default else None)
    if default is not None and default.kind == method:
        return default
    return db.session.scalar(
        select(MfaFactor)
        .where(MfaFactor.user_id == row.user_id, MfaFactor.kind == method)
        .order_by(MfaFactor.id)
    )


def _render(row: UserSession, form, template: str, status: int = 200, **ctx) -> ResponseReturnValue:
    clinic = policy.current()
    factor = _factor(row)
    usable = signin.usable_factors(row.user, clinic)
    lock = wrong_codes.lock_of(row.user)
    return render(
        f"mfa/{template}.html",
        f"mfa/_{template}_form.html",
        status,
        form=form,
        user=row.user,
        factor=factor,
        sent_to=codes.shown_as(factor.kind, factor.target) if factor and factor.target else None,
        resend_in=codes.seconds_until_resend(row.user_id, PURPOSE_SIGN_IN, row.id)
        if factor and factor.kind in CODE_CHANNELS
        else 0,
        other_ways=[
            (f.kind, SWITCH_LABELS[f.kind]) for f in usable if not factor or f.kind != factor.kind
        ],
        switch_form=ConfirmForm(),
        support=clinic.support_contact,
        remember_days=policy.remember_days_for(row.user, clinic),
        locked=_lock_message(lock) if lock else None,
        **ctx,
    )


def _refused(
    row: UserSession, form, template: str, refused: wrong_codes.Refused
) -> ResponseReturnValue:
    """No code was compared: the sign-in has used its tries, the factor is locked, or the
    client address has sent too many wrong codes (429 with Retry-After)."""
    if refused.sign_in_ended:
        sessions.end(row, "too_many_codes", only_if_pending=True)
        db.session.commit()
        flash("Too many wrong codes. Please enter your password again.", "error")
        return redirect_to(url_for("auth.sign_in"))
    if refused.lock is not None:
        response = _render(row, form, template, 429)
    else:
        minutes = max(1, math.ceil(refused.retry_after / 60))
        response = _render(
            row,
            form,
            template,
            429,
            error="Too many wrong codes were entered from your network. "
            f"Try again in {plural(minutes, 'minute')}.",
        )
    response.headers["Retry-After"] = str(refused.retry_after)
    return response


def _failed(
    row: UserSession,
    reserved: wrong_codes.Reserved,
    method: str,
    form,
    template: str,
    message: str,
) -> ResponseReturnValue:
    """The reserved try was wrong (FAC-6); end the pending sign-in when its tries are used up."""
    outcome = wrong_codes.record_failure(row, method, reserved)
    if outcome.sign_in_ended:
        flash(
            _lock_message(outcome.lock)
            if outcome.lock
            else "Too many wrong codes. Please enter your password again.",
            "error",
        )
        return redirect_to(url_for("auth.sign_in"))
    return _render(row, form, template, 422, error=message)


def _signed_in(row: UserSession, method: str, remember_device: bool) -> ResponseReturnValue:
    user = row.user
    wrong_codes.record_success(user)
    audit.record("sign_in.succeeded", actor=user, subject=user, method=method)
    response = redirect_to(row.pending_next or url_for("home.index"))
    days = policy.remember_days_for(user, policy.current())
    device = None
    if remember_device and days > 0:
        device = remember(response, user, days)
        audit.record("device.remembered", actor=user, subject=user, label=device.label)
    db.session.commit()
    login_user(user)
    if device is not None:
        notify.device_remembered(user, device)
        db.session.commit()
    return response


@bp.get("/challenge")
def challenge() -> ResponseReturnValue:
    """Ask for a code from the factor being used (the default one unless switched)."""
    row = _pending_challenge()
    if row is None:
        return _back_to_sign_in()
    return _render(row, ChallengeForm(), "challenge")


@bp.post("/challenge")
def challenge_post() -> ResponseReturnValue:
    """Check the code. Cases: tries used up, locked or address blocked (refused before any
    comparison); right and unused (signed in under a new session id, optionally remembering
    the device); wrong, malformed, expired or replayed (422, counted); the sign-in's last
    allowed try (back to the password)."""
    row = _pending_challenge()
    if row is None:
        return _back_to_sign_in()
    form = ChallengeForm()
    reserved = wrong_codes.reserve(row)
    if isinstance(reserved, wrong_codes.Refused):
        return _refused(row, form, "challenge", reserved)
    factor = _factor(row)
    # A malformed code is compared as no code: it is a wrong try like any other.
    code = totp.normalise_code(form.code.data) if form.validate() else None
    if factor is None:
        ok = False
    elif factor.kind == TOTP:
        ok = factors.consume_totp(factor, code)
    else:
        ok = codes.verify(
            row.user_id,
            purpose=PURPOSE_SIGN_IN,
            target=factor.target or "",
            session_id=row.id,
            code=code,
        )
    if ok and factor is not None and sessions.promote(row, method=factor.kind):
        return _signed_in(row, factor.kind, bool(form.remember.data))
    message = WRONG_CODE[TOTP] if factor is None or factor.kind == TOTP else WRONG_CODE["sent"]
    return _failed(row, reserved, factor.kind if factor else "none", form, "challenge", message)


@bp.post("/challenge/method")
def challenge_method() -> ResponseReturnValue:
    """Switch to another of the user's factors that the policy allows; anything else is
    refused (SEC-2: no downgrade by editing the request)."""
    row = _pending_challenge()
    if row is None:
        return _back_to_sign_in()
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    wanted = request.form.get("method", "")
    usable = {f.kind: f for f in signin.usable_factors(row.user, policy.current())}
    if wanted not in usable:
        audit.record("mfa.method_refused", subject=row.user, method=wanted[:16])
        db.session.commit()
        abort(403)
    sessions.choose_method(row, wanted)
    audit.record("mfa.method_switched", subject=row.user, method=wanted)
    db.session.commit()
    if wanted in CODE_CHANNELS:
        deliver_sign_in_code(row, usable[wanted])
    return redirect_to(url_for("mfa.challenge"))


@bp.post("/challenge/resend")
def challenge_resend() -> ResponseReturnValue:
    """Send a new email or SMS code (the old one stops working)."""
    row = _pending_challenge()
    if row is None:
        return _back_to_sign_in()
    if not ConfirmForm().validate_on_submit():
        abort(400)
    factor = _factor(row)
    if factor is None or factor.kind not in CODE_CHANNELS:
        abort(403)
    deliver_sign_in_code(row, factor)
    return redirect_to(url_for("mfa.challenge"))


@bp.get("/challenge/recovery")
def recovery() -> ResponseReturnValue:
    """Sign in with a recovery code instead."""
    row = _pending_challenge()
    if row is None:
        return _back_to_sign_in()
    return _render(row, RecoveryCodeForm(), "recovery")


@bp.post("/challenge/recovery")
def recovery_post() -> ResponseReturnValue:
    """Spend a recovery code (single use, race-safe). The phone is likely lost: every other
    session ends, remembered devices are forgotten, and the user is emailed (AUTH-6, DEV-2)."""
    row = _pending_challenge()
    if row is None:
        return _back_to_sign_in()
    form = RecoveryCodeForm()
    reserved = wrong_codes.reserve(row)
    if isinstance(reserved, wrong_codes.Refused):
        return _refused(row, form, "recovery", reserved)
    user = row.user
    code = form.code.data if form.validate() else None
    if recovery_codes.use(user.id, code) and sessions.promote(row, method="recovery"):
        sessions.end_all_for(user.id, reason="recovery_code_used", keep=row)
        revoked = revoke_all(user.id)
        response = _signed_in(row, "recovery", remember_device=False)
        left = recovery_codes.remaining(user.id)
        notify.recovery_code_used(user, left, devices_forgotten=revoked)
        db.session.commit()
        return response
    return _failed(row, reserved, "recovery", form, "recovery", WRONG_RECOVERY)
