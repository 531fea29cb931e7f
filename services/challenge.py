"""The pieces of a sign-in challenge shared by the password step and the MFA views."""

from __future__ import annotations

from flask import flash

from models import MfaFactor, UserSession
from models.codes import PURPOSE_SIGN_IN
from services import codes, factor_kinds, wrong_codes


def deliver_sign_in_code(row: UserSession, factor: MfaFactor) -> codes.SendResult | None:
    """Send a sign-in code for ``factor``, bound to this pending sign-in, and flash what
    happened (sent, or why not and what to do). None when nothing was tried: the kind sends
    no codes, or the second factor is locked (the challenge shows the lock and when it ends;
    a code that cannot be used would only train people to ignore them, FAC-6)."""
    kind = factor_kinds.get(factor.kind)
    if not isinstance(kind, factor_kinds.CodeSendingKind) or factor.target is None:
        return None
    if wrong_codes.lock_of(row.user) is not None:
        return None
    result = codes.send_code(
        row.user, kind=kind, target=factor.target, purpose=PURPOSE_SIGN_IN, session_id=row.id
    )
    if isinstance(result, codes.Sent):
        flash(result.message, "info")
    elif isinstance(result, codes.Failed):
        flash(f"{result.message} Try again in a minute, or use another way below.", "error")
    else:
        flash(result.message, "error")
    return result
