"""Validating ``next`` URLs so sign-in cannot be turned into an open redirect."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import request


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


def page_on_this_site(url: str | None) -> str | None:
    """The path and query of ``url`` when it is a page of this site (same scheme and host as
    the request), else None: where a form came from (Referer, HX-Current-URL), to send the
    person back to it."""
    if not url:
        return None
    parts = urlsplit(url)
    if (parts.scheme, parts.netloc) != (request.scheme, request.host):
        return None
    return safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))
