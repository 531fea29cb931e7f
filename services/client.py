"""Facts about the requesting client, read only from what can be trusted.

The remote address is the socket's, or the one ProxyFix took from the configured number of
trusted proxies (MFA_TRUSTED_PROXIES); a forged X-Forwarded-For changes nothing otherwise.
"""

from __future__ import annotations

from flask import request


def client_ip() -> str:
    return (request.remote_addr or "")[:45]


def user_agent() -> str:
    return request.headers.get("User-Agent", "")[:255]
