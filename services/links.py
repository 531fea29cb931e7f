"""Links that leave the request: built from MFA_BASE_URL, and kept out of logs (SEC-4).

A link in an email must point at the clinic's own address whatever Host header the request
that caused it carried; otherwise anyone could have a real user emailed a reset link to their
own server. And a link that carries a token (password reset, invitation) must not
land in an access log: ``redact_tokens`` is what the gunicorn logger and the error log apply.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from flask import current_app

# Paths whose next segment is a secret. Add a prefix here when a new emailed link carries one;
# the access log and the error log then redact it too.
TOKEN_PATH_PREFIXES = ("/reset-password/", "/invitation/")
REDACTED = "[redacted]"


def _any_spelling(prefix: str) -> str:
    # /reset%2Dpassword/<token> reaches the same view, so each character may be percent-encoded.
    return "".join(f"(?:{re.escape(ch)}|%{ord(ch):02x})" for ch in prefix)


_TOKEN_PATH = re.compile(
    "(" + "|".join(_any_spelling(prefix) for prefix in TOKEN_PATH_PREFIXES) + r")[^\s?#\"]+",
    re.IGNORECASE,
)


def external_url(endpoint: str, **values: Any) -> str:
    """The absolute URL of ``endpoint`` under MFA_BASE_URL, inside a request or outside one
    (a CLI command); the request's Host is never looked at. ``endpoint`` is a full name."""
    app = current_app
    base = urlsplit(app.config["MFA_BASE_URL"])
    app.inject_url_defaults(endpoint, values)
    adapter = app.url_map.bind(base.netloc, url_scheme=base.scheme, script_name="/")
    return adapter.build(endpoint, values, force_external=True)


def redact_tokens(text: str) -> str:
    """``text`` with the secret segment of every token-bearing path replaced by ``[redacted]``."""
    return _TOKEN_PATH.sub(rf"\g<1>{REDACTED}", text)
