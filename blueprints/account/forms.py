"""The security page's forms. Most changes are a button: ``ConfirmForm`` (its CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField
from wtforms.validators import DataRequired, Length

from blueprints.auth.forms import ResetPasswordForm


class RemoveFactorForm(FlaskForm):
    # "yes" from the page that says what removing the last way means.
    confirmed = HiddenField()


class ChangePasswordForm(ResetPasswordForm):
    """The new password twice under the one length rule (services/passwords.py), and the
    current one: a session left open must not be enough to take the account over."""

    current = PasswordField(
        "Current password",
        validators=[DataRequired("Enter your current password."), Length(max=256)],
        render_kw={"autocomplete": "current-password"},
    )
