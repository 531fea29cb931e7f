"""Remembered devices (DEV-2): forget one, or all. A forgotten device's cookie no longer
skips the code at its next sign-in."""

from __future__ import annotations

from flask import abort
from flask.typing import ResponseReturnValue
from flask_login import login_required

from blueprints.account import bp
from blueprints.account.security_views import changed, me
from blueprints.auth.fresh import fresh_required
from services import devices, notify
from services.wording import plural


@bp.post("/security/devices/<int:device_id>/forget")
@login_required
@fresh_required
def forget_device(device_id: int) -> ResponseReturnValue:
    """Forget one of your remembered devices; someone else's is a 404."""
    user, _ = me()
    label = devices.revoke(user.id, device_id)
    if label is None:
        abort(404)
    return changed(
        "devices",
        f"{label}: forgotten. It will be asked for a code next time.",
        event="device.forgotten",
        email=lambda: notify.devices_forgotten(user, label=label, count=1),
        label=label,
        device_id=device_id,
    )


@bp.post("/security/devices/forget")
@login_required
@fresh_required
def forget_devices() -> ResponseReturnValue:
    """Forget every remembered device of yours."""
    user, _ = me()
    count = devices.revoke_all(user.id)
    return changed(
        "devices",
        f"{plural(count, 'remembered device')} forgotten.",
        event="device.forgotten_all",
        email=lambda: notify.devices_forgotten(user, label=None, count=count),
        count=count,
    )
