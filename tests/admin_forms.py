"""What the admin's security settings form posts, for tests that post it."""

from __future__ import annotations


def security_settings(token: str, **values: object) -> dict[str, object]:
    """The form as it comes filled on a new clinic, with ``values`` changed; a value of None
    leaves that field out (an unticked checkbox group)."""
    form: dict[str, object] = {
        "csrf_token": token,
        "mode": "off",
        "methods": ["totp"],
        "admins_app_only": "y",
        "remember_days": "90",
        "code_valid_minutes": "5",
        "same_location_days": "30",
        "support_contact": "",
    }
    form.update(values)
    return {k: v for k, v in form.items() if v is not None}
