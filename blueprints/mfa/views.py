"""The sign-in challenge: a code from the default factor, or a recovery code."""

from __future__ import annotations

import math

from flask import flash, g, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_user

from blueprints.htmx import redirect_to, render
from blueprints.mfa import bp
from blueprints.mfa.forms import ChallengeForm, RecoveryCodeForm
from models import UserSession, db
from models.sessions import STEP_CHALLENGE
from models.types import utcnow
from services import audit, factors, mfa_guard, notify, policy, sessions, totp
from services import recovery as recovery_codes
from services.devices import remember

WRONG_CODE = "That code did not work. Check the newest code in your app and try again."
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


def _lock_message(lock: mfa_guard.Lock) -> str:
    if lock.until is None:
        return "Your sign-in codes are locked. Ask your clinic's administrator to unlock them."
    minutes = max(1, math.ceil((lock.until - utcnow()).total_seconds() / 60))
    return f"Too many wrong codes. Your sign-in codes are locked for {minutes} more minutes."


def _render(row: UserSession, form, template: str, status: int = 200, **ctx) -> ResponseReturnValue:
    clinic_policy = policy.current()
    lock = mfa_guard.lock_of(row.user)
    return render(
        f"mfa/{template}.html",
        f"mfa/_{template}_form.html",
        status,
        form=form,
        user=row.user,
        support=clinic_policy.support_contact,
        remember_days=clinic_policy.remember_days,
        locked=_lock_message(lock) if lock else None,
        **ctx,
    )


def _failed(
    row: UserSession, form, template: str, method: str, message: str
) -> ResponseReturnValue:
    """Count a wrong code (FAC-6); end the pending sign-in when its tries are used up."""
    db.session.rollback()  # nothing from the failed attempt may stick
    outcome = mfa_guard.record_failure(row, method)
    if outcome.sign_in_ended:
        sessions.end(row, "too_many_codes", only_if_pending=True)
        db.session.commit()
        flash(
            _lock_message(outcome.lock)
            if outcome.lock
            else "Too many wrong codes. Please enter your password again.",
            "error",
        )
        return redirect_to(url_for("auth.sign_in"))
    db.session.commit()
    return _render(row, form, template, 422, error=message)


def _signed_in(row: UserSession, method: str, remember_device: bool) -> ResponseReturnValue:
    user = row.user
    mfa_guard.record_success(user)
    audit.record("sign_in.succeeded", actor=user, subject=user, method=method)
    response = redirect_to(row.pending_next or url_for("home.index"))
    if remember_device:
        days = policy.current().remember_days
        if days > 0:
            device = remember(response, user, days)
            audit.record("device.remembered", actor=user, subject=user, label=device.label)
    db.session.commit()
    login_user(user)
    return response


@bp.get("/challenge")
def challenge() -> ResponseReturnValue:
    """Ask for a code from the user's default factor."""
    row = _pending_challenge()
    if row is None:
        return _back_to_sign_in()
    return _render(row, ChallengeForm(), "challenge")


@bp.post("/challenge")
def challenge_post() -> ResponseReturnValue:
    """Check the code. Cases: locked (429, not checked); right and unused (signed in under a
    new session id, optionally remembering the device); wrong, malformed or replayed (422,
    counted); the sign-in's last allowed try (back to the password)."""
    row = _pending_challenge()
    if row is None:
        return _back_to_sign_in()
    form = ChallengeForm()
    lock = mfa_guard.lock_of(row.user)
    if lock is not None:
        return _render(row, form, "challenge", 429)
    if not form.validate_on_submit():
        return _render(row, form, "challenge", 422)
    factor = row.user.default_factor
    code = totp.normalise_code(form.code.data)
    if (
        factor is not None
        and factors.consume_totp(factor, code)
        and sessions.promote(row, method=factor.kind)
    ):
        return _signed_in(row, factor.kind, bool(form.remember.data))
    return _failed(row, form, "challenge", factor.kind if factor else "none", WRONG_CODE)


@bp.get("/challenge/recovery")
def recovery() -> ResponseReturnValue:
    """Sign in with a recovery code instead of the app."""
    row = _pending_challenge()
    if row is None:
        return _back_to_sign_in()
    return _render(row, RecoveryCodeForm(), "recovery")


@bp.post("/challenge/recovery")
def recovery_post() -> ResponseReturnValue:
    """Spend a recovery code (single use, race-safe) and tell the user it was used."""
    row = _pending_challenge()
    if row is None:
        return _back_to_sign_in()
    form = RecoveryCodeForm()
    if mfa_guard.lock_of(row.user) is not None:
        return _render(row, form, "recovery", 429)
    if not form.validate_on_submit():
        return _render(row, form, "recovery", 422)
    user = row.user
    if recovery_codes.use(user.id, form.code.data) and sessions.promote(row, method="recovery"):
        notify.recovery_code_used(user, recovery_codes.remaining(user.id))
        return _signed_in(row, "recovery", remember_device=False)
    return _failed(row, form, "recovery", "recovery", WRONG_RECOVERY)
