"""Changes to a user's credentials, with the revocations each one implies (AUTH-6, DEV-2)."""

from __future__ import annotations

from models import User, UserSession
from services import devices, factors, locations, sessions
from services.passwords import hash_password, password_problem
from services.users import UserInputError


def change_password(user: User, new_password: str, *, keep: UserSession | None = None) -> None:
    """Set a new password; every other session and every remembered device stops working."""
    if not user.is_person:
        raise UserInputError("API users have no password: they read the API with tokens.")
    problem = password_problem(new_password)
    if problem:
        raise UserInputError(problem)
    user.password_hash = hash_password(new_password)
    devices.revoke_all(user.id)
    locations.forget_all(user.id)
    sessions.end_all_for(user.id, reason="password_changed", keep=keep)


def reset_mfa(user: User) -> None:
    """Remove every factor, recovery code and remembered device; end every session."""
    factors.reset_all(user.id)
    sessions.end_all_for(user.id, reason="mfa_reset")
