"""Email code (FAC-2, FAC-4): six digits emailed for each sign-in. Weaker than an app."""

from __future__ import annotations

from flask import current_app
from markupsafe import Markup

from models import MfaFactor, User
from models.codes import PURPOSE_SIGN_IN
from models.factors import EMAIL
from services import notify, policy
from services.factor_kinds.base import CodeSendingKind
from services.mail import send
from services.users import UserInputError, normalise_email


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}{'*' * max(3, len(local) - 1)}@{domain}"


class EmailCode(CodeSendingKind):
    name = EMAIL
    label = "Email"
    description = (
        "We email you a code each time you sign in. Weaker than an app: anyone who can read "
        "your email can also get the code, so security bodies do not count email as a true "
        "second factor."
    )
    switch_label = "Email me a code instead"
    code_source = "the code we email you"
    set_up_message = "Codes by email are set up."
    lost_phrase = "if you cannot get your emailed codes"
    wrong_code = "That code did not work. Check the newest email and try again."
    wrong_setup_code = "That code did not work. Check the newest email, or send a new code."
    first_stage = "confirm"
    replace_label = "Change the email address"
    replace_hint = (
        "Codes keep going to {current} until you enter the code we send to the new address."
    )
    noun = "email"
    target_noun = "email address"
    arrival_hint = "; check your junk folder too"
    back_label = "Back: check the address"
    confirm_template = "mfa/_step_confirm_email.html"
    confirm_button = "Email me a code"

    def challenge_prompt(self, user: User, factor: MfaFactor | None) -> Markup:
        return Markup("Enter the 6-digit code we emailed to <strong>{}</strong>.").format(
            self.shown_as(factor.target if factor else None)
        )

    def shown_as(self, target: str | None) -> str | None:
        return mask_email(target) if target else None

    def target_for(self, user: User, typed: str, *, current: str | None = None) -> str:
        if current is not None:
            # Changing where codes go: any address, proved by the code sent to it.
            return normalise_email(typed)
        # Seed 000: the address is typed again, so a typo on the profile shows up now.
        if typed.strip().lower() != user.email:
            raise UserInputError(
                "That is not the email address on your account. Check it and try again."
            )
        return user.email

    def mailbox(self, target: str) -> str | None:
        return target

    def deliver(self, user: User, target: str, *, purpose: str, code: str, minutes: int) -> None:
        clinic = current_app.config["MFA_CLINIC_NAME"]
        send(
            target,
            f"Your {clinic} sign-in code"
            if purpose == PURPOSE_SIGN_IN
            else f"Confirm your email for {clinic}",
            "code",
            user=user,
            code=code,
            minutes=minutes,
            purpose=purpose,
            clinic=clinic,
            support=policy.current().support_contact,
            **notify.where_and_when(),
        )


KIND = EmailCode()
