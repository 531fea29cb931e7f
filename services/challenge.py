"""The pieces of a sign-in challenge shared by the password step and the MFA views."""

from __future__ import annotations

from flask import flash

from models import MfaFactor, UserSession
from models.codes import PURPOSE_SIGN_IN
from models.factors import EMAIL, SMS, TOTP
from services import codes, wrong_codes
from services.mail import DeliveryError

CODE_CHANNELS = (EMAIL, SMS)

# How each method is offered as "another way" on the challenge page.
SWITCH_LABELS = {
    TOTP: "Use your authenticator app instead",
    EMAIL: "Email me a code instead",
    SMS: "Text me a code instead",
}


def deliver_sign_in_code(row: UserSession, factor: MfaFactor) -> bool:
    """Send a sign-in code for ``factor``, bound to this pending sign-in. On refusal or
    failure, flash what happened and what to do; the caller shows the challenge either way.

    Nothing is sent while the second factor is locked: the challenge shows the lock and when
    it ends, and a code that cannot be used would only train people to ignore them (FAC-6).
    """
    assert factor.target is not None
    if wrong_codes.lock_of(row.user) is not None:
        return False
    try:
        sent = codes.send_code(
            row.user,
            channel=factor.kind,
            target=factor.target,
            purpose=PURPOSE_SIGN_IN,
            session_id=row.id,
        )
    except codes.SendRefused as refused:
        flash(refused.message, "error")
        return False
    except DeliveryError:
        what = "email" if factor.kind == EMAIL else "text message"
        flash(
            f"We could not send the {what} just now. Try again in a minute, or use another way "
            "below.",
            "error",
        )
        return False
    flash(
        f"We sent a code to {sent.shown_as}. It expires in {sent.expires_in_minutes} minutes.",
        "info",
    )
    return True
