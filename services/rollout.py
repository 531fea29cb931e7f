"""Role-by-role rollout (ADM-3, seed 001): a role follows the clinic's mode or has its own,
and "required" may wait for a go-live date, a day in the clinic's time zone."""

from __future__ import annotations

from datetime import date

from sqlalchemy import and_, exists, select

from models import Role, User, db
from models.policy import MODE_REQUIRED
from models.user import ROLE_MODES
from services import localtime
from services.policy import Change, PolicyError

ROLE_MODE_LABELS = {
    "default": "Clinic setting",
    "off": "Off",
    "optional": "Optional",
    "required": "Required",
}


def roles() -> list[Role]:
    """Every role there is to roll out to. A role held by API users alone (the "Reporting"
    role they get by default) has nobody to ask, so it is not shown with the others."""
    api_users_only = and_(
        exists().where(User.role_id == Role.id, ~User.is_person),
        ~exists().where(User.role_id == Role.id, User.is_person),
    )
    return list(db.session.scalars(select(Role).where(~api_users_only).order_by(Role.id)))


def set_role(role: Role, mode: str, required_from: date | None) -> Change:
    """Give ``role`` its own mode (or the clinic's, "default") and, for required, an optional
    go-live date. A date already passed may be kept but not newly chosen: it would make the
    rule apply at once while looking like a future date."""
    if mode not in ROLE_MODES:
        raise PolicyError(f"Choose one of {', '.join(ROLE_MODES)}.", "mode")
    if required_from is not None and mode != MODE_REQUIRED:
        raise PolicyError("A go-live date only applies to Required.", "required_from")
    if (
        required_from is not None
        and required_from < localtime.today()
        and required_from != role.mfa_required_from
    ):
        raise PolicyError(
            "Choose today or a later date, or leave it empty to require it now.",
            "required_from",
        )
    before = {"mode": role.mfa_mode, "required_from": _iso(role.mfa_required_from)}
    role.mfa_mode = mode
    role.mfa_required_from = required_from
    after = {"mode": role.mfa_mode, "required_from": _iso(role.mfa_required_from)}
    return Change.between(before, after)


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None
