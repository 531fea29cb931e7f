"""The clinic's MFA policy (ADM): one row, created with defaults on first read."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models import Base

MODE_OFF = "off"
MODE_OPTIONAL = "optional"
MODE_REQUIRED = "required"
MODES = (MODE_OFF, MODE_OPTIONAL, MODE_REQUIRED)
# The clinic has one policy, always this row.
POLICY_ID = 1


class ClinicPolicy(Base):
    __tablename__ = "clinic_policy"

    id: Mapped[int] = mapped_column(primary_key=True)
    # MFA is off until an admin turns it on (ADM-1, seed 004).
    mode: Mapped[str] = mapped_column(String(8), default=MODE_OFF)
    # Comma-separated method names, e.g. "totp,email".
    allowed_methods: Mapped[str] = mapped_column(String(64), default="totp")
    # 0 turns "remember this device" off; at most 90 (DEV-2).
    remember_days: Mapped[int] = mapped_column(default=90)
    support_contact: Mapped[str] = mapped_column(String(200), default="")
    # Email and SMS are weaker than an app (FAC-4); by default admins may only use the app.
    admins_app_only: Mapped[bool] = mapped_column(default=True)
    # How long an emailed or texted code stays valid: 5 minutes, an admin may allow up to 10.
    code_valid_minutes: Mapped[int] = mapped_column(default=5)
    # An Administrator's account opens the clinic's settings: no device skips their second
    # step unless this is switched on (DEV-2).
    admins_may_remember: Mapped[bool] = mapped_column(default=False)
    # "Prompt only once from the same location" (DEV-3, seed 003): off by default; when on, a
    # second factor passed from an address skips the prompt from it for this many days.
    same_location: Mapped[bool] = mapped_column(default=False)
    same_location_days: Mapped[int] = mapped_column(default=30)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m in self.allowed_methods.split(",") if m)
