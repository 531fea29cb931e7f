"""The sign-in challenge: a code from an enrolled factor, or a recovery code.

The method being asked for is kept on the pending session row; the code form carries only the
code, so no edited field can switch to a method the user lacks or the policy forbids. What to
ask and how to check it come from the factor's kind (services/factor_kinds); how a success
ends, from ``complete_sign_in``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps

from flask import abort, flash, g, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from blueprints.auth.completion import complete_sign_in
from blueprints.htmx import redirect_to, render
from blueprints.mfa import bp
from blueprints.mfa.forms import ChallengeForm, ConfirmForm, RecoveryCodeForm
from models import MfaFactor, UserSession, db
from models.codes import PURPOSE_SIGN_IN
from models.sessions import STEP_CHALLENGE
from models.types import utcnow
from services import (
    audit,
    codes,
    devices,
    factor_kinds,
    locations,
    notify,
    policy,
    sessions,
    signin,
    wrong_codes,
)
from services import recovery as recovery_codes
from services.challenge import deliver_sign_in_code
from services.wording import plural

CHALLENGE = ("mfa/challenge.html", "mfa/_challenge_form.html")
# Every endpoint a pending challenge may reach (blueprints/mfa/pending_guard.py).
ENDPOINTS = frozenset(
    {
        "mfa.challenge",
        "mfa.challenge_post",
        "mfa.challenge_method",
        "mfa.challenge_resend",
        "mfa.recovery",
        "mfa.recovery_post",
    }
)
RECOVERY = ("mfa/recovery.html", "mfa/_recovery_form.html")


def _pending_challenge() -> UserSession | None:
    row = sessions.pending()
    return row if row is not None and row.pending_step == STEP_CHALLENGE else None


def pending_challenge(
    view: Callable[[UserSession], ResponseReturnValue],
) -> Callable[[], ResponseReturnValue]:
    """Run ``view`` with this browser's pending challenge; without one, back to sign-in."""

    @wraps(view)
    def with_row() -> ResponseReturnValue:
        row = _pending_challenge()
        return _back_to_sign_in() if row is None else view(row)

    return with_row


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


def _render(
    row: UserSession, form, templates: tuple[str, str], status: int = 200, **ctx
) -> ResponseReturnValue:
    """The challenge (or recovery) page as page or partial. A code-sending factor is asked
    for only while a code is out there; otherwise the page says nothing was sent."""
    clinic = policy.current()
    factor = _factor(row)
    if templates is RECOVERY:
        kind: factor_kinds.FactorKind | None = factor_kinds.RECOVERY
    else:
        kind = factor_kinds.get(factor.kind) if factor else None
    usable = signin.usable_factors(row.user, clinic)
    lock = wrong_codes.lock_of(row.user)
    sends = kind is not None and kind.sends_codes
    page, partial = templates
    return render(
        page,
        partial,
        status,
        form=form,
        user=row.user,
        kind=kind,
        prompt=kind.challenge_prompt(row.user, factor) if kind else None,
        code_out=not sends or codes.has_active_code(row.user_id, PURPOSE_SIGN_IN, row.id),
        resend_in=codes.seconds_until_resend(row.user_id, PURPOSE_SIGN_IN, row.id) if sends else 0,
        other_ways=[
            (f.kind, factor_kinds.get(f.kind).switch_label)
            for f in usable
            if not factor or f.kind != factor.kind
        ],
        recovery_kind=factor_kinds.RECOVERY,
        switch_form=ConfirmForm(),
        support=clinic.support_contact,
        remember_days=policy.remember_days_for(row.user, clinic),
        locked=_lock_message(lock) if lock else None,
        **ctx,
    )


def _refused(
    row: UserSession, form, templates: tuple[str, str], refused: wrong_codes.Refused
) -> ResponseReturnValue:
    """The try was not counted: the sign-in has used its tries, the factor is locked, or the
    client address has sent too many wrong codes (429 with Retry-After)."""
    if refused.sign_in_ended:
        sessions.end(row, "too_many_codes", only_if_pending=True)
        db.session.commit()
        flash("Too many wrong codes. Please enter your password again.", "error")
        return redirect_to(url_for("auth.sign_in"))
    error = None
    if refused.lock is None:
        minutes = max(1, math.ceil(refused.retry_after / 60))
        error = (
            "Too many wrong codes were entered from your network. "
            f"Try again in {plural(minutes, 'minute')}."
        )
    response = _render(row, form, templates, 429, error=error)
    response.headers["Retry-After"] = str(refused.retry_after)
    return response


def _failed(
    row: UserSession,
    counted: wrong_codes.Counted,
    kind: factor_kinds.FactorKind,
    form,
    templates: tuple[str, str],
) -> ResponseReturnValue:
    """The counted try was wrong (FAC-6); end the pending sign-in when its tries are used up."""
    outcome = wrong_codes.record_failure(row, kind.name, counted)
    if outcome.sign_in_ended:
        flash(
            _lock_message(outcome.lock)
            if outcome.lock
            else "Too many wrong codes. Please enter your password again.",
            "error",
        )
        return redirect_to(url_for("auth.sign_in"))
    return _render(row, form, templates, 422, error=kind.wrong_code)


def _check(
    row: UserSession,
    form,
    kind: factor_kinds.FactorKind,
    factor: MfaFactor | None,
    templates: tuple[str, str],
) -> ResponseReturnValue:
    """Let ``kind`` judge the code, then the gate decide whether that stands
    (services/wrong_codes.py); what the challenge and the recovery form share. Cases: right
    and the gate open (signed in through ``complete_sign_in``); wrong, malformed, expired or
    replayed (422, counted); the last allowed try (back to the password); not counted (see
    ``_refused``)."""
    # A malformed code is judged as no code: a wrong try like any other.
    code = form.code.data if form.validate() else None
    passed = kind.check_sign_in(row, factor, code)
    if passed is not None:
        user = row.user
        remember = bool(getattr(form, "remember", None) and form.remember.data)
        if kind is factor_kinds.RECOVERY:
            # The phone is likely lost: every other session ends and remembered devices are
            # forgotten (AUTH-6, DEV-2), before this sign-in completes.
            sessions.end_all_for(user.id, reason="recovery_code_used", keep=row)
            forgotten = devices.revoke_all(user.id)
            locations.forget_all(user.id)
        response = complete_sign_in(
            user, method=kind.name, pending=row, remember_device=remember, passed=passed
        )
        if response is None:
            return _back_to_sign_in()
        if kind is factor_kinds.RECOVERY:
            left = recovery_codes.remaining(user.id)
            notify.recovery_code_used(user, left, devices_forgotten=forgotten)
            db.session.commit()
        return response
    counted = wrong_codes.count_wrong(row)
    if isinstance(counted, wrong_codes.Refused):
        return _refused(row, form, templates, counted)
    return _failed(row, counted, kind, form, templates)


@bp.get("/challenge")
@pending_challenge
def challenge(row: UserSession) -> ResponseReturnValue:
    """Ask for a code from the factor being used (the default one unless switched)."""
    return _render(row, ChallengeForm(), CHALLENGE)


@bp.post("/challenge")
@pending_challenge
def challenge_post(row: UserSession) -> ResponseReturnValue:
    """Check a code from the factor being used; see ``_check`` for the cases."""
    factor = _factor(row)
    if factor is None:
        abort(403)  # no factor of the method on the row: nothing to check against
    return _check(row, ChallengeForm(), factor_kinds.get(factor.kind), factor, CHALLENGE)


@bp.post("/challenge/method")
@pending_challenge
def challenge_method(row: UserSession) -> ResponseReturnValue:
    """Switch to another of the user's factors that the policy allows; anything else is
    refused (SEC-2: no downgrade by editing the request)."""
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
    deliver_sign_in_code(row, usable[wanted])
    return redirect_to(url_for("mfa.challenge"))


@bp.post("/challenge/resend")
@pending_challenge
def challenge_resend(row: UserSession) -> ResponseReturnValue:
    """Send a new email or SMS code (the old one stops working)."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    factor = _factor(row)
    if factor is None or not factor_kinds.get(factor.kind).sends_codes:
        abort(403)
    deliver_sign_in_code(row, factor)
    return redirect_to(url_for("mfa.challenge"))


@bp.get("/challenge/recovery")
@pending_challenge
def recovery(row: UserSession) -> ResponseReturnValue:
    """Sign in with a recovery code instead."""
    return _render(row, RecoveryCodeForm(), RECOVERY)


@bp.post("/challenge/recovery")
@pending_challenge
def recovery_post(row: UserSession) -> ResponseReturnValue:
    """Spend a recovery code (single use, race-safe); see ``_check`` for the cases."""
    return _check(row, RecoveryCodeForm(), factor_kinds.RECOVERY, None, RECOVERY)
