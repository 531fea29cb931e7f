"""Creating and finding staff users, with the input rules in one place."""

from __future__ import annotations

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import bindparam, func, select

from models import Role, User, db
from services import policy
from services.passwords import hash_password, password_problem


class UserInputError(ValueError):
    """Input a person can fix; the message says how."""


def normalise_email(raw: str) -> str:
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise UserInputError(str(exc)) from exc
    return result.normalized.lower()


def normalise_mobile(raw: str) -> str:
    """E.164 form of a mobile number, read in the clinic's default region."""
    region = current_app.config["MFA_DEFAULT_PHONE_REGION"] or None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise UserInputError("That is not a phone number.") from exc
    if not phonenumbers.is_valid_number(number):
        raise UserInputError("That phone number is not valid.")
    kind = phonenumbers.number_type(number)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise UserInputError("Enter a mobile number that can receive text messages.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == email.strip().lower()))


# The password step asks the policy next: it comes in the same SELECT (PERF-2).
_SIGNING_IN = policy.beside(select(User).where(User.email == bindparam("p_email")))


def signing_in(email: str) -> User | None:
    """``by_email`` for the password step, with the clinic's policy read beside the person
    (kept for the request: services/policy.py)."""
    found = db.session.execute(_SIGNING_IN, {"p_email": email.strip().lower()}).first()
    if found is None:
        return None
    policy.keep(found)
    return found.User


def role_named(name: str) -> Role:
    role = db.session.scalar(select(Role).where(func.lower(Role.name) == name.strip().lower()))
    if role is None:
        names = ", ".join(db.session.scalars(select(Role.name).order_by(Role.id)))
        raise UserInputError(f"No role called {name!r}. Roles: {names}.")
    return role


def new_email(raw: str) -> str:
    """A normalised address nobody has yet."""
    address = normalise_email(raw)
    if by_email(address) is not None:
        raise UserInputError(f"A user with the email {address} already exists.")
    return address


def create_user(
    email: str,
    password: str | None,
    *,
    role: str,
    full_name: str = "",
    mobile: str | None = None,
) -> User:
    """Validate and add a user to the session; the caller commits. ``password`` None: an
    invited person, who chooses it from their emailed link (services/invitations.py)."""
    address = new_email(email)
    if password is not None:
        problem = password_problem(password)
        if problem:
            raise UserInputError(problem)
    user = User(
        email=address,
        full_name=full_name.strip()[:120],
        mobile_number=normalise_mobile(mobile) if mobile else None,
        password_hash=hash_password(password) if password is not None else None,
        role=role_named(role),
    )
    db.session.add(user)
    return user
