"""Who emails come from: the clinic's name unless MAIL_DEFAULT_SENDER says otherwise."""

from __future__ import annotations

import pytest

from models import db
from tests.conftest import AuthActions, make_app
from tests.test_password_reset import KNOWN, ask


def _sender_of_reset_email(app, mailbox, make_user):
    make_user(email=KNOWN)
    ask(AuthActions(app.test_client()))
    (message,) = mailbox.to(KNOWN)
    return message["From"]


def test_emails_come_from_the_clinics_name_by_default(app, mailbox, make_user):
    sender = _sender_of_reset_email(app, mailbox, make_user)
    assert str(sender) == "Harbour Clinic <no-reply@clinic.example>"


@pytest.mark.parametrize(
    "name",
    ['Harbour "North", Clinic', "Clínica Ōtaki"],
    ids=["quoted", "encoded"],
)
def test_the_clinics_name_is_quoted_or_encoded_in_the_sender(
    database_url, app, mailbox, make_user, name
):
    named = make_app(database_url, MFA_CLINIC_NAME=name)
    try:
        sender = _sender_of_reset_email(named, mailbox, make_user)
    finally:
        with named.app_context():
            db.engine.dispose()
    (address,) = sender.addresses
    assert (address.display_name, address.addr_spec) == (name, "no-reply@clinic.example")
    assert sender.defects == ()


def test_a_configured_sender_wins(database_url, app, mailbox, make_user):
    configured = make_app(database_url, MAIL_DEFAULT_SENDER="Clinic IT <it@clinic.example>")
    try:
        sender = _sender_of_reset_email(configured, mailbox, make_user)
    finally:
        with configured.app_context():
            db.engine.dispose()
    assert str(sender) == "Clinic IT <it@clinic.example>"
