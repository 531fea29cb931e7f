"""Remembered devices (DEV-1, DEV-2).

A random 256-bit token in a ``__Host-`` cookie (HttpOnly, Secure, SameSite=Lax); the server
keeps its SHA-256 with the user, a label and the times. It skips only the second factor, only
for the user it was made for, and only until the server-side expiry. Flask-Login's own
remember-me cookie is never used.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Response, current_app, request
from sqlalchemy import delete, select, update

from models import RememberedDevice, Role, User, db
from models.types import utcnow

MAX_DAYS = 90


def cookie_name() -> str:
    return "__Host-mfa_device" if current_app.config["SESSION_COOKIE_SECURE"] else "mfa_device"


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def label_for(user_agent: str) -> str:
    """A short "Browser on OS" label a person recognises in a device list."""
    browser = next(
        (
            name
            for pattern, name in (
                (r"Edg/", "Edge"),
                (r"OPR/", "Opera"),
                (r"Firefox/", "Firefox"),
                (r"Chrome/|Chromium/|CriOS/", "Chrome"),
                (r"Safari/", "Safari"),
            )
            if re.search(pattern, user_agent)
        ),
        "Browser",
    )
    system = next(
        (
            name
            for pattern, name in (
                (r"iPhone|iPad", "iOS"),
                (r"Android", "Android"),
                (r"Windows", "Windows"),
                (r"Mac OS X|Macintosh", "macOS"),
                (r"CrOS", "ChromeOS"),
                (r"Linux", "Linux"),
            )
            if re.search(pattern, user_agent)
        ),
        "unknown system",
    )
    return f"{browser} on {system}"


def remember(response: Response, user: User, days: int) -> RememberedDevice:
    """Create a device row and set its cookie on ``response``."""
    days = max(1, min(days, MAX_DAYS))
    token = secrets.token_urlsafe(32)
    now = utcnow()
    device = RememberedDevice(
        user_id=user.id,
        token_hash=_hash(token),
        label=label_for(request.headers.get("User-Agent", "")),
        created_at=now,
        last_used_at=now,
        expires_at=now + timedelta(days=days),
    )
    db.session.add(device)
    response.set_cookie(
        cookie_name(),
        token,
        max_age=days * 86400,
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
        path="/",
    )
    return device


def recognised(user: User, days_allowed: int) -> RememberedDevice | None:
    """The device row if this browser's cookie was made for ``user`` and is still valid.

    A shortened policy duration applies to devices remembered before the change.
    """
    token = request.cookies.get(cookie_name())
    if not token or days_allowed <= 0 or len(token) > 128:
        return None
    device = db.session.scalar(
        select(RememberedDevice).where(RememberedDevice.token_hash == _hash(token))
    )
    if device is None or device.user_id != user.id:
        return None
    now = utcnow()
    if now >= device.expires_at or now >= device.created_at + timedelta(days=days_allowed):
        return None
    db.session.execute(
        update(RememberedDevice).where(RememberedDevice.id == device.id).values(last_used_at=now)
    )
    return device


@dataclass(frozen=True)
class Listed:
    """A remembered device as its owner sees it: until when it really works (a shortened
    policy applies to devices remembered before), and whether it is this browser."""

    device: RememberedDevice
    until: datetime
    this_browser: bool


def listed_for(user_id: int, days_allowed: int) -> list[Listed]:
    """The user's devices that still skip the code, newest first."""
    if days_allowed <= 0:
        return []
    token = request.cookies.get(cookie_name()) or ""
    here = _hash(token) if token and len(token) <= 128 else None
    now = utcnow()
    rows = db.session.scalars(
        select(RememberedDevice)
        .where(RememberedDevice.user_id == user_id, RememberedDevice.expires_at > now)
        .order_by(RememberedDevice.created_at.desc(), RememberedDevice.id.desc())
    )
    listed = [
        Listed(
            device=row,
            until=min(row.expires_at, row.created_at + timedelta(days=days_allowed)),
            this_browser=here is not None and secrets.compare_digest(row.token_hash, here),
        )
        for row in rows
    ]
    return [item for item in listed if item.until > now]


def revoke(user_id: int, device_id: int) -> str | None:
    """Forget one of ``user_id``'s devices; its label, or None when they have no such device
    (someone else's id changes nothing)."""
    return db.session.execute(
        delete(RememberedDevice)
        .where(RememberedDevice.id == device_id, RememberedDevice.user_id == user_id)
        .returning(RememberedDevice.label)
    ).scalar_one_or_none()


def revoke_all(user_id: int) -> int:
    result = db.session.execute(delete(RememberedDevice).where(RememberedDevice.user_id == user_id))
    return result.rowcount or 0


def revoke_everyone() -> int:
    """Remembering was switched off: every device row goes, not just stops counting."""
    return db.session.execute(delete(RememberedDevice)).rowcount or 0


def revoke_for_role(role_name: str) -> int:
    users_of_role = select(User.id).join(Role).where(Role.name == role_name)
    result = db.session.execute(
        delete(RememberedDevice).where(RememberedDevice.user_id.in_(users_of_role))
    )
    return result.rowcount or 0


def forget(response: Response) -> None:
    response.delete_cookie(
        cookie_name(), path="/", secure=current_app.config["SESSION_COOKIE_SECURE"], samesite="Lax"
    )
