"""People: staff users and their roles."""

from __future__ import annotations

from datetime import date, datetime

from flask_login import UserMixin
from sqlalchemy import Date, ForeignKey, String
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models import Base
from models.factors import MfaFactor
from models.types import UTCDateTime, utcnow

ADMINISTRATOR = "Administrator"
DEFAULT_ROLES = (ADMINISTRATOR, "Practitioner", "Reception", "Location")

# A role's two-step policy (ADM-3): the clinic's mode, or its own.
ROLE_DEFAULT = "default"
ROLE_MODES = (ROLE_DEFAULT, "off", "optional", "required")
# One person's override (ADM-4): the clinic's (and role's) rule, always, or never demanded.
OVERRIDE_DEFAULT = "default"
OVERRIDE_REQUIRED = "required"
OVERRIDE_EXEMPT = "exempt"
OVERRIDES = (OVERRIDE_DEFAULT, OVERRIDE_REQUIRED, OVERRIDE_EXEMPT)
# What kind of account (ADM-10, seed 003): a person on the staff, or an API user: a service
# account with no usable password that never signs in and reads the API with its tokens.
KIND_STAFF = "staff"
KIND_API = "api"


class Role(Base):
    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # The staggered rollout (ADM-3, seed 001): "default" follows the clinic's mode; "required"
    # may wait for a go-live date, a day in the clinic's time zone.
    mfa_mode: Mapped[str] = mapped_column(String(8), default=ROLE_DEFAULT)
    mfa_required_from: Mapped[date | None] = mapped_column(Date)

    def __repr__(self) -> str:
        return f"<Role {self.name}>"


class User(UserMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored normalised (trimmed, lower case), which makes the unique constraint case-blind.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(120), default="")
    # E.164, e.g. +61412345678; validated with phonenumbers before it gets here.
    mobile_number: Mapped[str | None] = mapped_column(String(16))
    # None while an invitation is open (services/invitations.py): no password matches it, so
    # nobody signs in as the person until they have chosen one from the emailed link.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Second-factor guessing (FAC-6), counted apart from password failures and across every
    # session, IP and process: wrong codes in a row, and how many lockouts they have caused.
    mfa_failed_attempts: Mapped[int] = mapped_column(default=0)
    mfa_lockouts: Mapped[int] = mapped_column(default=0)
    mfa_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Set by an admin (ADM-4, seed 002): "default", "required" or "exempt".
    mfa_override: Mapped[str] = mapped_column(String(8), default=OVERRIDE_DEFAULT)
    # "Prompt only once from the same location" for this person (DEV-3, seed 003): None
    # follows the clinic's setting.
    same_location: Mapped[bool | None] = mapped_column()
    kind: Mapped[str] = mapped_column(String(8), default=KIND_STAFF, server_default=KIND_STAFF)
    # A one-time bypass (ADM-6, seed 002), granted by an admin to someone who lost their
    # phone: until this moment their next password sign-in is let through once, straight
    # into the setup wizard. Spent (set to None) by that sign-in; services/bypass.py.
    mfa_bypass_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mfa_bypass_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )

    role: Mapped[Role] = relationship(lazy="joined", innerjoin=True)
    # Loaded with the session row on MFA requests, so checking a code costs no extra query.
    default_factor: Mapped[MfaFactor | None] = relationship(
        primaryjoin="and_(User.id == MfaFactor.user_id, MfaFactor.is_default == True)",
        viewonly=True,
        uselist=False,
        lazy="select",
    )

    @property
    def is_active(self) -> bool:  # Flask-Login asks this
        return self.active

    @hybrid_property
    def is_person(self) -> bool:
        """A person who signs in, as opposed to an API user. In a query, ``User.is_person``
        is the same rule in SQL: the one place that keeps API users out of enrolment counts,
        rollout notices and the impact of a change."""
        return self.kind == KIND_STAFF

    @property
    def is_admin(self) -> bool:
        return self.role.name == ADMINISTRATOR

    @property
    def invited(self) -> bool:
        """Created by an admin and not yet signed up: no password chosen yet."""
        return self.password_hash is None

    @property
    def display_name(self) -> str:
        return self.full_name or self.email

    def __repr__(self) -> str:
        return f"<User {self.email}>"
