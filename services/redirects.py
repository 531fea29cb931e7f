"""Validating ``next`` URLs so sign-in cannot be turned into an open redirect."""

from __future__ import annotations

from urllib.parse import urlsplit


def safe_next(target: str | None) -> str | None:
    """Return ``target`` if it is a path on this site, else None.

    Browsers treat ``\\`` like ``/`` and drop tabs and newlines, so ``/\\evil.example`` and
    ``/\\t/evil.example`` are off-site even though they start with one slash.
    """
    if not target or len(target) > 2048:
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target) or "\\" in target:
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
