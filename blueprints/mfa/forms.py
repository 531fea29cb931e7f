"""One form per MFA step."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, Field, RadioField, SelectChoice, StringField, TelField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

# UX-1: the phone's number pad, the OS's one-time-code autofill, pasted spaces accepted.
CODE_ATTRS = {
    "autocomplete": "one-time-code",
    "inputmode": "numeric",
    "autocapitalize": "none",
    "spellcheck": "false",
    "maxlength": "12",
    "class": "code-input",
}


class CodeForm(FlaskForm):
    code = StringField(
        "6-digit code",
        validators=[DataRequired("Enter the 6-digit code."), Length(max=32)],
        render_kw=CODE_ATTRS,
    )


class ChallengeForm(CodeForm):
    remember = BooleanField("Don't ask again on this device (not on a shared computer)")


class RecoveryCodeForm(FlaskForm):
    code = StringField(
        "Recovery code",
        validators=[DataRequired("Enter one of your recovery codes."), Length(max=32)],
        render_kw={
            "autocomplete": "off",
            "autocapitalize": "characters",
            "spellcheck": "false",
            "maxlength": "20",
        },
    )


class ChooseMethodForm(FlaskForm):
    method = RadioField(
        "How would you like to get your codes?", validators=[InputRequired("Choose a method.")]
    )


class RememberForm(FlaskForm):
    remember = RadioField(
        "Your choice",
        choices=[
            SelectChoice("yes", "Yes, remember this device"),
            SelectChoice("no", "No, ask me every time"),
        ],
        default="no",
        validators=[InputRequired("Choose yes or no.")],
    )


class ConfirmForm(FlaskForm):
    """A button and its CSRF token: continue, skip, start again."""


class TargetForm(FlaskForm):
    """Confirming where codes will go: ``typed`` is the field the person types it in."""

    change_label: str  # the field's label when it replaces where codes go now

    @property
    def typed(self) -> Field:
        raise NotImplementedError

    def for_change(self) -> TargetForm:
        self.typed.label.text = self.change_label
        return self


class ConfirmEmailForm(TargetForm):
    """Seed 000: the user types their address again, so a typo on the profile shows up now.
    When changing where codes go, the new address instead."""

    email = EmailField(
        "Your email address",
        validators=[DataRequired("Enter your email address."), Length(max=254)],
        render_kw={"autocomplete": "email", "autocapitalize": "none", "spellcheck": "false"},
    )
    change_label = "New email address for your codes"

    @property
    def typed(self) -> Field:
        return self.email


class MobileNumberForm(TargetForm):
    number = TelField(
        "A different mobile number",
        validators=[Optional(), Length(max=32)],
        render_kw={"autocomplete": "tel", "inputmode": "tel"},
    )
    # The profile's number changes only when asked, and only once the code proves it.
    to_profile = BooleanField("Also make this the mobile number on my profile")
    change_label = "New mobile number"

    @property
    def typed(self) -> Field:
        return self.number
