"""Changes to a user's credentials, with the revocations each one implies (AUTH-6, DEV-2), and
lifting the locks that failed attempts put on them (OPS-4)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete

from models import SignInThrottle, User, UserSession, db
from services import devices, factors, locations, sessions, throttle, wrong_codes
from services.passwords import hash_password, password_problem
from services.users import UserInputError, by_email


def change_password(user: User, new_password: str, *, keep: UserSession | None = None) -> None:
    """Set a new password; every other session and every remembered device stops working."""
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


def forget_devices(user: User) -> tuple[int, int]:
    """Forget every remembered device and end the sessions, which a lost or stolen device may
    hold; (devices forgotten, sessions ended)."""
    forgotten = devices.revoke_all(user.id)
    return forgotten, sessions.end_all_for(user.id, reason="devices_forgotten")


def sign_out_everywhere(user: User) -> int:
    """End every session and forget every trusted address; how many sessions ended."""
    locations.forget_all(user.id)
    return sessions.end_all_for(user.id, reason="signed_out_everywhere")


@dataclass(frozen=True)
class Unlocked:
    password: bool  # the address's password throttling was lifted
    second_factor: bool  # a second-factor lock was lifted


def unlock(email: str) -> Unlocked:
    """Lift the password throttling of ``email`` (known or not: the count is per address)
    and any lock on its user's second factor. `flask users unlock` and the admin's page."""
    password = (
        db.session.execute(
            delete(SignInThrottle).where(SignInThrottle.key == throttle.email_key(email))
        ).rowcount
        or 0
    ) > 0
    user = by_email(email)
    second_factor = user is not None and wrong_codes.lock_of(user) is not None
    if user is not None:
        wrong_codes.unlock(user)
    return Unlocked(password=password, second_factor=second_factor)
