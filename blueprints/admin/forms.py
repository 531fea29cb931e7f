"""The admin area's forms. Ranges and the rules between values live in services (policy,
rollout, overrides), which raise PolicyError naming the field; the views put it there."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import InputRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from services import factor_kinds
from services.overrides import OVERRIDE_LABELS, SAME_LOCATION_LABELS
from services.policy import MODE_LABELS
from services.rollout import ROLE_MODE_LABELS


def _choices(labels: dict[str, str]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in labels.items()]


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class SecuritySettingsForm(FlaskForm):
    mode = RadioField(
        "Two-step sign-in for the clinic",
        choices=_choices(MODE_LABELS),
        validators=[InputRequired("Choose off, optional or required.")],
    )
    methods = CheckboxesField(
        "Ways people may get their code",
        choices=[SelectChoice(kind.name, kind.label) for kind in factor_kinds.enrollable()],
        validators=[InputRequired("Allow at least one way.")],
    )
    admins_app_only = BooleanField("Administrators must use an authenticator app")
    remember_days = IntegerField(
        "Remember a device for (days)",
        validators=[InputRequired("Enter a number of days; 0 turns it off.")],
    )
    admins_may_remember = BooleanField("Administrators may have a device remembered")
    code_valid_minutes = IntegerField(
        "Emailed and texted codes stay valid for (minutes)",
        validators=[InputRequired("Enter a number of minutes from 1 to 10.")],
    )
    same_location = BooleanField("Prompt only once from the same location")
    same_location_days = IntegerField(
        "Trust a location for (days)",
        validators=[InputRequired("Enter a number of days from 1 to 90.")],
    )
    support_contact = StringField(
        "Who to contact for help", validators=[Optional(), Length(max=200)]
    )
    # Set by the confirmation step: the admin has seen what the change does.
    confirmed = HiddenField()

    def values(self) -> dict[str, Any]:
        """The settings as ``services.policy.validated`` takes them."""
        return {
            "mode": self.mode.data,
            "methods": ",".join(self.methods.data or []),
            "admins_app_only": self.admins_app_only.data,
            "remember_days": self.remember_days.data,
            "admins_may_remember": self.admins_may_remember.data,
            "code_valid_minutes": self.code_valid_minutes.data,
            "same_location": self.same_location.data,
            "same_location_days": self.same_location_days.data,
            "support_contact": self.support_contact.data or "",
        }


class RolePolicyForm(FlaskForm):
    mode = SelectField("Two-step sign-in", choices=_choices(ROLE_MODE_LABELS))
    required_from = DateField("Required from", validators=[Optional()])


class UserRulesForm(FlaskForm):
    override = RadioField("Two-step sign-in for this person", choices=_choices(OVERRIDE_LABELS))
    same_location = SelectField(
        "Prompt only once from the same location",
        choices=_choices(SAME_LOCATION_LABELS),
    )
    mobile_number = StringField("Mobile number", validators=[Optional(), Length(max=32)])


class ApiUserForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[InputRequired("Enter a name, e.g. Monthly report."), Length(max=80)],
    )
    # Choices from services.api_access.role_choices(), set by the view.
    role = SelectField("Role in reports", choices=[])


class ApiTokenForm(FlaskForm):
    label = StringField(
        "Label",
        validators=[
            InputRequired("Enter a label, e.g. Power BI on the reporting server."),
            Length(max=80),
        ],
    )
    days = IntegerField(
        "Valid for (days)",
        default=90,
        validators=[InputRequired("Enter a number of days from 1 to 365.")],
    )


class ConfirmForm(FlaskForm):
    # "yes" once the admin has seen what the action does.
    confirmed = HiddenField()
