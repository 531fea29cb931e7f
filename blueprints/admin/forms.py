"""The admin area's forms. Ranges and the rules between values live in services (policy,
rollout, overrides, users, bypass), which raise PolicyError naming the field (or
UserInputError); the views and validators put it there."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from services import bypass, factor_kinds, user_list
from services.overrides import OVERRIDE_LABELS, SAME_LOCATION_LABELS
from services.policy import MODE_LABELS
from services.rollout import ROLE_MODE_LABELS
from services.users import UserInputError, new_email, normalise_mobile


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


class UserListForm(FlaskForm):
    """The users list's search, filters, sort and page: read from the query string (GET, so
    no CSRF token); a value that is not one of the choices is refused with a 400."""

    class Meta:
        csrf = False

    q = StringField("Search by name or email", validators=[Optional(), Length(max=100)])
    # Choices are the roles, set by the view; "" is any.
    role = SelectField("Role", choices=[SelectChoice("", "Any role")], default="")
    status = SelectField(
        "Status",
        choices=[SelectChoice("", "Any status"), *_choices(user_list.STATUS_LABELS)],
        default="",
    )
    sort = SelectField("Sort by", choices=_choices(user_list.SORT_LABELS), default="name")
    dir = SelectField(
        "Order",
        choices=[SelectChoice("asc", "A to Z"), SelectChoice("desc", "Z to A")],
        default="asc",
    )
    page = IntegerField(
        "Page",
        default=1,
        validators=[
            Optional(),
            NumberRange(1, user_list.MAX_PAGE, f"Choose a page from 1 to {user_list.MAX_PAGE}."),
        ],
    )
    per_page = SelectField(
        "People per page",
        choices=[SelectChoice(str(n), str(n)) for n in user_list.PAGE_SIZES],
        default=str(user_list.PAGE_SIZES[0]),
    )

    def query(self) -> user_list.Query:
        return user_list.Query(
            search=self.q.data or "",
            role_id=int(self.role.data) if self.role.data else None,
            status=self.status.data or "",
            sort=self.sort.data or "name",
            descending=self.dir.data == "desc",
            page=self.page.data or 1,
            per_page=int(self.per_page.data or user_list.PAGE_SIZES[0]),
        )


class AddUserForm(FlaskForm):
    email = EmailField(
        "Email address",
        validators=[InputRequired("Enter their email address."), Length(max=254)],
        render_kw={"autocomplete": "off", "autocapitalize": "none", "spellcheck": "false"},
    )
    full_name = StringField(
        "Full name", validators=[InputRequired("Enter their name."), Length(max=120)]
    )
    role = SelectField("Role")
    mobile_number = StringField("Mobile number", validators=[Optional(), Length(max=32)])

    def validate_email(self, field: EmailField) -> None:
        try:
            field.data = new_email(field.data or "")
        except UserInputError as error:
            raise ValidationError(str(error)) from error

    def validate_mobile_number(self, field: StringField) -> None:
        if field.data and field.data.strip():
            try:
                normalise_mobile(field.data)
            except UserInputError as error:
                raise ValidationError(str(error)) from error


class RoleForm(FlaskForm):
    role = SelectField("New role")


class BypassForm(FlaskForm):
    hours = IntegerField(
        "Let them sign in without a code for (hours)",
        default=bypass.DEFAULT_HOURS,
        validators=[
            InputRequired(f"Enter a number of hours from 1 to {bypass.MAX_HOURS}."),
            NumberRange(1, bypass.MAX_HOURS, f"Choose from 1 to {bypass.MAX_HOURS} hours."),
        ],
    )


class ConfirmForm(FlaskForm):
    """An action confirmed on its own page or partial: the form is its CSRF token, and for
    API token revocation ``confirmed`` says the admin has seen what it does."""

    confirmed = HiddenField()
