"""Authenticator app (TOTP, RFC 6238; FAC-1): the recommended kind."""

from __future__ import annotations

from markupsafe import Markup
from sqlalchemy import bindparam, update

from models import MfaFactor, MfaSetup, User, UserSession
from models.factors import TOTP
from services import crypto, totp, wrong_codes
from services.factor_kinds.base import FactorKind

RECOMMENDED_APPS = ("Microsoft Authenticator", "Google Authenticator", "Authy")

# Built once with bind parameters: this runs on every code a person types (PERF-2).
_FACTORS = MfaFactor.__table__.c
_SPEND = wrong_codes.guarded(
    update(MfaFactor.__table__)
    .where(_FACTORS.id == bindparam("p_id"), _FACTORS.last_step < bindparam("p_step"))
    .values(last_step=bindparam("p_step"), last_used_at=bindparam("p_now")),
    _FACTORS.user_id,
)


def consume(factor: MfaFactor, code: str | None) -> wrong_codes.Passed | None:
    """Spend ``code`` if it is a current code of ``factor`` not used before.

    The guarded UPDATE is the arbiter: it matches only while the step is newer than the last
    one accepted and the gate is open, so of N racing requests carrying the same code exactly
    one succeeds, and none once a lock has landed.
    """
    if code is None or factor.secret_encrypted is None:
        return None
    secret = crypto.decrypt(factor.secret_encrypted)
    step = totp.matching_step(secret, code, after_step=factor.last_step)
    if step is None:
        return None
    return wrong_codes.passed(wrong_codes.spend(_SPEND, p_id=factor.id, p_step=step))


class AuthenticatorApp(FactorKind):
    name = TOTP
    label = "Authenticator app"
    description = (
        "A free app on your phone makes a new code every 30 seconds, even without signal. "
        f"We recommend {', '.join(RECOMMENDED_APPS[:-1])} or {RECOMMENDED_APPS[-1]}: find one "
        'in the App Store or Google Play by searching "authenticator".'
    )
    recommended = True
    switch_label = "Use your authenticator app instead"
    code_source = "the code from your authenticator app"
    set_up_message = "Your authenticator app is set up."
    lost_phrase = "if you cannot use your authenticator app"
    wrong_code = "That code did not work. Check the newest code in your app and try again."
    wrong_setup_code = (
        "That code did not work. Check the app shows your clinic, then enter the newest code."
    )
    first_stage = "scan"
    replace_label = "Move to a new phone"
    replace_hint = (
        "Moving to a new phone? Scan this with the app on the new phone. Your old phone keeps "
        "working until you enter a code from the new one; from then on only the new one works."
    )

    def challenge_prompt(self, user: User, factor: MfaFactor | None) -> Markup:
        return Markup(
            "Open the authenticator app on your phone and enter the 6-digit code it shows "
            "for <strong>{}</strong>."
        ).format(user.email)

    def start_setup(self, setup: MfaSetup) -> None:
        setup.secret_encrypted = crypto.encrypt(totp.new_secret())

    def check_sign_in(
        self, row: UserSession, factor: MfaFactor | None, code: str | None
    ) -> wrong_codes.Passed | None:
        return None if factor is None else consume(factor, totp.normalise_code(code))

    def check_setup(self, setup: MfaSetup, user: User, code: str | None) -> int | None:
        normal = totp.normalise_code(code)
        if normal is None or setup.secret_encrypted is None:
            return None
        secret = crypto.decrypt(setup.secret_encrypted)
        # The step just used: that code, or an earlier one, cannot sign anyone in.
        return totp.matching_step(secret, normal, after_step=0)


KIND = AuthenticatorApp()
