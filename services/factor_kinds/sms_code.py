"""SMS code (FAC-3, FAC-4): six digits texted to a mobile number. Weaker than an app."""

from __future__ import annotations

from flask import current_app, render_template
from markupsafe import Markup

from models import MfaFactor, User
from models.factors import SMS
from services.factor_kinds.base import CodeSendingKind
from services.sms import mask_number, send_sms
from services.users import UserInputError, normalise_mobile


class SmsCode(CodeSendingKind):
    name = SMS
    label = "Text message (SMS)"
    description = (
        "We text a code to your mobile each time. Weaker than an app: text messages can be "
        "intercepted, or a number moved to another SIM."
    )
    switch_label = "Text me a code instead"
    code_source = "the code we text to your mobile"
    set_up_message = "Codes by text message are set up."
    lost_phrase = "if you cannot get your text messages"
    wrong_code = "That code did not work. Check the newest text message and try again."
    wrong_setup_code = "That code did not work. Check the newest text message, or send a new code."
    first_stage = "confirm"
    replace_label = "Change the mobile number"
    replace_hint = (
        "Codes keep going to {current} until you enter the code we text to the new number."
    )
    noun = "text message"
    target_noun = "mobile number"
    arrival_hint = ""
    back_label = "Back: change the number"
    confirm_template = "mfa/_step_confirm_sms.html"
    confirm_button = "Send SMS"

    def challenge_prompt(self, user: User, factor: MfaFactor | None) -> Markup:
        return Markup(
            "Enter the 6-digit code we sent to <strong>{}</strong> by text message."
        ).format(self.shown_as(factor.target if factor else None))

    def shown_as(self, target: str | None) -> str | None:
        return mask_number(target) if target else None

    def target_for(self, user: User, typed: str, *, current: str | None = None) -> str:
        target = normalise_mobile(typed) if typed.strip() else (user.mobile_number or "")
        if not target:
            raise UserInputError("Enter your mobile number.")
        return target

    def deliver(self, user: User, target: str, *, purpose: str, code: str, minutes: int) -> None:
        clinic = current_app.config["MFA_CLINIC_NAME"]
        send_sms(
            target,
            render_template("sms/code.txt", code=code, minutes=minutes, clinic=clinic).strip(),
        )


KIND = SmsCode()
