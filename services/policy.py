"""Reading and changing the clinic's MFA policy; the rules for valid values live here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, g
from sqlalchemy import Row, Select

from models import ClinicPolicy, User, db
from models.factors import EMAIL, SMS, TOTP
from models.policy import MODE_OFF, MODE_OPTIONAL, MODE_REQUIRED, MODES, POLICY_ID
from models.user import ADMINISTRATOR
from services import devices, locations, mail, sms

# Methods this build can deliver, in the order the wizard offers them (strongest first).
METHOD_LABELS = {TOTP: "Authenticator app", EMAIL: "Email", SMS: "Text message (SMS)"}
MODE_LABELS = {MODE_OFF: "Off", MODE_OPTIONAL: "Optional", MODE_REQUIRED: "Required"}
MAX_CODE_MINUTES = 10
MAX_REMEMBER_DAYS = 90


MAX_SAME_LOCATION_DAYS = 90
# The columns an admin sets, in the order pages and the audit log show them.
SETTINGS = (
    "mode",
    "allowed_methods",
    "admins_app_only",
    "remember_days",
    "admins_may_remember",
    "code_valid_minutes",
    "same_location",
    "same_location_days",
    "support_contact",
)


class PolicyError(ValueError):
    """A policy value that cannot be stored; the message says why, ``field`` which value."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Change:
    """What a change did, for the audit log: the old and new value of each setting changed."""

    before: dict[str, Any]
    after: dict[str, Any]

    @classmethod
    def between(cls, before: dict[str, Any], after: dict[str, Any]) -> Change:
        changed = [key for key in before if before[key] != after[key]]
        return cls({k: before[k] for k in changed}, {k: after[k] for k in changed})


def current() -> ClinicPolicy:
    """The clinic's policy row, read at most once per request.

    The row is kept on ``g`` as long as the request's database session lives (both belong to
    the app context): the session's identity map holds rows only weakly, so on its own it
    would forget a row nothing else refers to. Every step of one request sees the same
    policy, a change made in this request is on this very object, and the next request reads
    it afresh. The request's session row is read with the policy row beside it
    (services/sessions.py, ``keep``), so most requests never read it on its own."""
    kept = g.get("clinic_policy")
    if kept is not None:
        return kept
    policy = db.session.get(ClinicPolicy, POLICY_ID)
    if policy is None:
        policy = ClinicPolicy(
            id=POLICY_ID,
            mode="off",
            allowed_methods=TOTP,
            remember_days=90,
            support_contact="",
            admins_app_only=True,
            code_valid_minutes=5,
            admins_may_remember=False,
        )
        db.session.add(policy)
        db.session.flush()
    g.clinic_policy = policy
    return policy


def beside(statement: Select[Any]) -> Select[Any]:
    """``statement`` with the policy row as one more column (None if there is none yet), so a
    request that reads a row and then asks the policy reads both at once; ``keep`` it."""
    return statement.add_columns(ClinicPolicy).outerjoin(ClinicPolicy, ClinicPolicy.id == POLICY_ID)


def keep(found: Row[Any]) -> None:
    """The policy row that a ``beside`` statement read, kept for this request."""
    if found.ClinicPolicy is not None:
        g.clinic_policy = found.ClinicPolicy


def methods_for(user: User, clinic: ClinicPolicy) -> tuple[str, ...]:
    """The methods this user may enrol and use: the clinic's, and for Administrators only
    the app unless the policy says otherwise (FAC-4: email and SMS are weaker)."""
    allowed = tuple(m for m in clinic.methods if m in METHOD_LABELS)
    if user.is_admin and clinic.admins_app_only:
        allowed = tuple(m for m in allowed if m == TOTP)
    return allowed


def remember_days_for(user: User, clinic: ClinicPolicy) -> int:
    """How many days this user may have a device remembered; 0 when they may not (DEV-2:
    Administrators only where the policy allows it)."""
    if user.is_admin and not clinic.admins_may_remember:
        return 0
    return clinic.remember_days


def parse_methods(raw: str) -> str:
    methods = [m.strip().lower() for m in raw.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHOD_LABELS]
    if unknown:
        raise PolicyError(
            f"Unknown method {', '.join(unknown)}; choose from {', '.join(METHOD_LABELS)}."
        )
    if not methods:
        raise PolicyError("Allow at least one method.")
    return ",".join(m for m in METHOD_LABELS if m in methods)


def delivery_problem(method: str) -> str | None:
    """Why codes of ``method`` cannot be delivered with this server's settings, or None.
    `make run`'s console transports count as delivered; production starts with them only
    when told to (config.refuse_unsafe_production)."""
    if method == EMAIL:
        return mail.transport_problem(current_app.config)
    if method == SMS:
        return sms.gateway_problem(current_app.config)
    return None


def snapshot(clinic: ClinicPolicy) -> dict[str, Any]:
    return {name: getattr(clinic, name) for name in SETTINGS}


def validated(
    *,
    mode: str | None = None,
    methods: str | None = None,
    remember_days: int | None = None,
    support_contact: str | None = None,
    admins_app_only: bool | None = None,
    code_valid_minutes: int | None = None,
    admins_may_remember: bool | None = None,
    same_location: bool | None = None,
    same_location_days: int | None = None,
) -> dict[str, Any]:
    """The settings given, checked and normalised as columns; PolicyError for the first value
    that cannot be stored. Nothing is changed: the admin page previews with this."""
    values: dict[str, Any] = {}
    if mode is not None:
        if mode not in MODES:
            raise PolicyError(f"Mode must be one of {', '.join(MODES)}.", "mode")
        values["mode"] = mode
    if methods is not None:
        parsed = parse_methods(methods)
        # A method nobody can receive a code by would strand whoever picks it (FAC-4, OPS-5).
        for method in parsed.split(","):
            problem = delivery_problem(method)
            if problem:
                raise PolicyError(
                    f"{METHOD_LABELS[method]} cannot be allowed yet. {problem}", "methods"
                )
        values["allowed_methods"] = parsed
    if remember_days is not None:
        if not 0 <= remember_days <= MAX_REMEMBER_DAYS:
            raise PolicyError(
                f"Remember days must be between 0 (off) and {MAX_REMEMBER_DAYS}.", "remember_days"
            )
        values["remember_days"] = remember_days
    if support_contact is not None:
        values["support_contact"] = support_contact.strip()[:200]
    if admins_app_only is not None:
        values["admins_app_only"] = admins_app_only
    if code_valid_minutes is not None:
        if not 1 <= code_valid_minutes <= MAX_CODE_MINUTES:
            raise PolicyError(
                f"Codes may stay valid for 1 to {MAX_CODE_MINUTES} minutes.", "code_valid_minutes"
            )
        values["code_valid_minutes"] = code_valid_minutes
    if admins_may_remember is not None:
        values["admins_may_remember"] = admins_may_remember
    if same_location is not None:
        values["same_location"] = same_location
    if same_location_days is not None:
        if not 1 <= same_location_days <= MAX_SAME_LOCATION_DAYS:
            raise PolicyError(
                f"Same-location days must be between 1 and {MAX_SAME_LOCATION_DAYS}.",
                "same_location_days",
            )
        values["same_location_days"] = same_location_days
    return values


def update(**given: Any) -> Change:
    """Change the settings given (see ``validated``) and say what changed.

    Turning remembering off (0 days) deletes every remembered device, so turning it on again
    later revives none of the old cookies (DEV-2); so does taking it from Administrators.
    Turning the same-location rule off forgets every trusted address.
    """
    values = validated(**given)
    clinic = current()
    before = snapshot(clinic)
    for name, value in values.items():
        setattr(clinic, name, value)
    change = Change.between(before, snapshot(clinic))
    if "remember_days" in values and clinic.remember_days == 0:
        devices.revoke_everyone()
    if "admins_may_remember" in change.after and not clinic.admins_may_remember:
        devices.revoke_for_role(ADMINISTRATOR)
    if "same_location" in change.after and not clinic.same_location:
        locations.forget_everyone()
    return change
