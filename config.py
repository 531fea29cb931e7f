"""Configuration: development defaults, overridden by the environment in production.

Flask's and the extensions' own keys keep their names; ours start with ``MFA_`` and name the
feature first. Durations are ``timedelta``. Every key read from the environment is listed in
README.md's configuration table.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from datetime import timedelta
from email.utils import formataddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from services.localtime import server_zone_name


class ConfigError(RuntimeError):
    """Raised at start-up when production configuration is missing or invalid."""


DEVELOPMENT_BASE_URL = "http://127.0.0.1:5000"  # where `make run` serves
DEVELOPMENT_HOSTS = ("127.0.0.1", "localhost")
# One DNS label: letters, digits and inner hyphens, at most 63 characters (RFC 1035).
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _env_minutes(name: str, default: int) -> timedelta:
    return timedelta(minutes=_env_int(name, default))


def defaults(instance_path: str) -> dict[str, Any]:
    """The settings every app starts from, before the environment or a test mapping."""
    production = os.environ.get("MFA_ENV", "production") != "development"
    secure_cookies = _env_bool("MFA_SECURE_COOKIES", production)
    return {
        "MFA_ENV": "production" if production else "development",
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL")
        or f"sqlite:///{Path(instance_path) / 'clinic-mfa.sqlite3'}",
        # Requests are small forms; anything larger is hostile or a mistake.
        "MAX_CONTENT_LENGTH": 64 * 1024,
        "MAX_FORM_MEMORY_SIZE": 64 * 1024,
        "MAX_FORM_PARTS": 100,
        # __Host- cookies need Secure, which browsers refuse over plain http on a LAN address.
        "SESSION_COOKIE_NAME": "__Host-session" if secure_cookies else "session",
        "SESSION_COOKIE_SECURE": secure_cookies,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session does
        "WTF_CSRF_SSL_STRICT": secure_cookies,
        # Production names its mail server: email codes cannot be allowed without one, and a
        # guessed local relay would lose security notices without a word.
        "MAIL_SERVER": os.environ.get("MAIL_SERVER") or (None if production else "127.0.0.1"),
        "MAIL_PORT": _env_int("MAIL_PORT", 25),
        "MAIL_USE_TLS": _env_bool("MAIL_USE_TLS", False),
        "MAIL_USE_SSL": _env_bool("MAIL_USE_SSL", False),
        "MAIL_USERNAME": os.environ.get("MAIL_USERNAME"),
        "MAIL_PASSWORD": os.environ.get("MAIL_PASSWORD"),
        # None: create_app names the clinic as the sender (default_sender below).
        "MAIL_DEFAULT_SENDER": os.environ.get("MAIL_DEFAULT_SENDER") or None,
        "MAIL_SUPPRESS_SEND": False,
        # "console" prints mail instead of sending it; `make run` uses it. Production refuses
        # it (and the console SMS gateway) unless the variable below says it is wanted.
        "MFA_MAIL_TRANSPORT": os.environ.get(
            "MFA_MAIL_TRANSPORT", "smtp" if production else "console"
        ),
        "MFA_ALLOW_CONSOLE_DELIVERY_IN_PRODUCTION": _env_bool(
            "MFA_ALLOW_CONSOLE_DELIVERY_IN_PRODUCTION", False
        ),
        "MAIL_TIMEOUT": _env_int("MAIL_TIMEOUT", 10),
        "MFA_CLINIC_NAME": os.environ.get("MFA_CLINIC_NAME", "Clinic"),
        # Times shown to people (pages, emails); stored times stay UTC.
        "MFA_TIME_ZONE": os.environ.get("MFA_TIME_ZONE") or server_zone_name(),
        "MFA_SESSION_IDLE_TIMEOUT": _env_minutes("MFA_SESSION_IDLE_MINUTES", 30),
        "MFA_SESSION_ABSOLUTE_TIMEOUT": _env_minutes("MFA_SESSION_ABSOLUTE_MINUTES", 12 * 60),
        # How stale last_seen may get before a request writes it: one write a minute, not one
        # a request. Idle timeout is therefore exact to within this much.
        "MFA_SESSION_TOUCH_EVERY": timedelta(seconds=60),
        "MFA_TRUSTED_PROXIES": _env_int("MFA_TRUSTED_PROXIES", 0),
        # X-Forwarded-Host from the proxies above is honoured only when asked for: a proxy
        # that passes the Host it was reached by needs nothing more.
        "MFA_TRUST_FORWARDED_HOST": _env_bool("MFA_TRUST_FORWARDED_HOST", False),
        # Links in emails are built from this, never from the request (SEC-4); its host, the
        # extra names below, and in development loopback are the only hosts answered.
        "MFA_BASE_URL": os.environ.get("MFA_BASE_URL")
        or (None if production else DEVELOPMENT_BASE_URL),
        "MFA_TRUSTED_HOSTS": os.environ.get("MFA_TRUSTED_HOSTS", ""),
        "MFA_DEFAULT_PHONE_REGION": os.environ.get("MFA_DEFAULT_PHONE_REGION", "AU"),
        # Password throttling (AUTH-1): free tries, then a doubling delay up to a cap.
        "MFA_PASSWORD_FREE_TRIES_PER_ACCOUNT": 5,
        "MFA_PASSWORD_FREE_TRIES_PER_IP": 20,
        "MFA_PASSWORD_MAX_DELAY": timedelta(minutes=15),
        "MFA_PASSWORD_HARD_LOCK_AFTER": 100,
        # argon2id cost as "t=2,m=19456,p=1" (or a mapping); None is OWASP's, those very values.
        # Only the test suite has a reason to lower them.
        "MFA_PASSWORD_HASH_PARAMS": os.environ.get("MFA_PASSWORD_HASH_PARAMS") or None,
        "MFA_PASSWORD_IP_WINDOW": timedelta(hours=1),
        # Second factor (FAC, AUTH-3).
        "MFA_PENDING_SIGN_IN_FOR": timedelta(minutes=5),
        # Changing factors or settings needs a password or code entered this recently (ACC-3).
        "MFA_FRESH_AUTH_FOR": timedelta(minutes=10),
        "MFA_WRONG_CODES_PER_SIGN_IN": 5,
        "MFA_WRONG_CODES_BEFORE_LOCK": 10,
        "MFA_LOCK_FOR": timedelta(minutes=15),
        "MFA_WRONG_CODES_HARD_LOCK": 100,
        # Wrong codes from one client address across every account, counted in the database.
        "MFA_WRONG_CODES_PER_ADDRESS": 50,
        "MFA_WRONG_CODES_ADDRESS_WINDOW": timedelta(minutes=15),
        "MFA_KEYS_FILE": os.environ.get("MFA_KEYS_FILE"),
        "MFA_ENCRYPTION_KEYS": os.environ.get("MFA_ENCRYPTION_KEYS"),
        "MFA_HASH_KEY": os.environ.get("MFA_HASH_KEY"),
        # Email and SMS codes (FAC-4).
        "MFA_CODE_RESEND_AFTER": timedelta(seconds=60),
        "MFA_CODE_SENDS_PER_HOUR": 5,
        "MFA_CODE_WRONG_TRIES": 5,
        "MFA_PASSWORD_RESET_VALID_FOR": timedelta(minutes=30),
        # An invitation to new staff: the emailed link to choose their password.
        "MFA_INVITATION_VALID_FOR": timedelta(hours=72),
        # SMS gateway: console (prints), webhook (signed JSON POST) or twilio. None in
        # production until one is chosen: SMS cannot be allowed then.
        "MFA_SMS_GATEWAY": os.environ.get("MFA_SMS_GATEWAY") or (None if production else "console"),
        "MFA_SMS_TIMEOUT": _env_int("MFA_SMS_TIMEOUT", 5),
        "MFA_SMS_WEBHOOK_URL": os.environ.get("MFA_SMS_WEBHOOK_URL"),
        "MFA_SMS_WEBHOOK_SECRET": os.environ.get("MFA_SMS_WEBHOOK_SECRET"),
        "MFA_SMS_TWILIO_ACCOUNT_SID": os.environ.get("MFA_SMS_TWILIO_ACCOUNT_SID"),
        "MFA_SMS_TWILIO_AUTH_TOKEN": os.environ.get("MFA_SMS_TWILIO_AUTH_TOKEN"),
        "MFA_SMS_TWILIO_FROM": os.environ.get("MFA_SMS_TWILIO_FROM"),
        "MFA_SMS_TWILIO_MESSAGING_SERVICE_SID": os.environ.get(
            "MFA_SMS_TWILIO_MESSAGING_SERVICE_SID"
        ),
        "MFA_SMS_TWILIO_BASE_URL": os.environ.get(
            "MFA_SMS_TWILIO_BASE_URL", "https://api.twilio.com"
        ),
        "MFA_FIRST_ADMIN_EMAIL": os.environ.get("MFA_FIRST_ADMIN_EMAIL", "admin@clinic.example"),
        # Rollout notices (ADM-3): emailed this many days before a role's go-live date, as
        # "14,1" or a tuple; create_app checks it (services/rollout_notices.parse_days).
        "MFA_ROLLOUT_NOTICE_DAYS": os.environ.get("MFA_ROLLOUT_NOTICE_DAYS") or (14, 1),
        # The API (ADM-10): requests per token, counted in Redis when a URI is given (e.g.
        # redis://127.0.0.1:6379), else in the database; never in one process's memory.
        "MFA_API_RATE_LIMIT": os.environ.get("MFA_API_RATE_LIMIT") or "60/minute",
        "MFA_RATELIMIT_STORAGE_URI": os.environ.get("MFA_RATELIMIT_STORAGE_URI") or None,
        # Keeps two clinics sharing one Redis apart; None: MFA_BASE_URL.
        "MFA_RATELIMIT_KEY_PREFIX": os.environ.get("MFA_RATELIMIT_KEY_PREFIX") or None,
        # A token's last use is written at most this often, like a session's last_seen.
        "MFA_API_TOKEN_TOUCH_EVERY": timedelta(seconds=60),
    }


DEFAULT_SENDER_ADDRESS = "no-reply@clinic.example"


def default_sender(clinic_name: str) -> str:
    """``Harbour Clinic <no-reply@clinic.example>``: the name quoted or RFC 2047-encoded as it
    needs, so a comma, a quote or an accent in the clinic's name cannot break the header."""
    return formataddr((clinic_name, DEFAULT_SENDER_ADDRESS))


def load_secret_key(instance_path: str, production: bool) -> str:
    """SECRET_KEY from the environment; in development, generated once into instance/."""
    key = os.environ.get("SECRET_KEY")
    if key:
        if production and len(key) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters in production.")
        return key
    if production:
        raise ConfigError(
            "SECRET_KEY is not set. Set it to a long random value, e.g. "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`, "
            "or set MFA_ENV=development to generate one into instance/."
        )
    path = Path(instance_path) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    # Created with 0600 so other local users cannot read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


ALLOW_CONSOLE = "MFA_ALLOW_CONSOLE_DELIVERY_IN_PRODUCTION"
CONSOLE_MAIL_REFUSED = (
    "MFA_MAIL_TRANSPORT=console prints every email, sign-in codes and password-reset links "
    "included, into the server log. In production send mail through SMTP "
    "(MFA_MAIL_TRANSPORT=smtp and MAIL_SERVER), or set "
    f"{ALLOW_CONSOLE}=1 if the log really is where they should go."
)
CONSOLE_SMS_REFUSED = (
    "MFA_SMS_GATEWAY=console prints every text message, sign-in codes included, into the "
    "server log. In production set MFA_SMS_GATEWAY to webhook or twilio, leave it unset if "
    f"the clinic does not use SMS, or set {ALLOW_CONSOLE}=1 if the log really is where they "
    "should go."
)
KEYS_NOT_SET = (
    "Encryption keys are not configured. In production set MFA_ENCRYPTION_KEYS and "
    "MFA_HASH_KEY, or MFA_KEYS_FILE to a key file kept apart from the database: a key file "
    "generated into instance/ beside the database ends up in the same backups, and a backup "
    "holding both defeats the encryption. Make the keys with "
    "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
    " (MFA_ENCRYPTION_KEYS) and `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
    " (MFA_HASH_KEY)."
)
KEYS_HALF_SET = (
    "MFA_ENCRYPTION_KEYS and MFA_HASH_KEY go together: set both, or neither and MFA_KEYS_FILE."
)


def refuse_unsafe_production(settings: Mapping[str, Any]) -> None:
    """ConfigError for the defaults that are fine on a laptop and unsafe on a server: codes
    printed into the log, and keys generated beside the database they protect. Whether each
    allowed method can be delivered is checked when the policy changes (services/policy.py),
    not here: refusing to start over a stored policy would lock everyone out."""
    if settings["MFA_ENV"] != "production":
        return
    if not settings.get(ALLOW_CONSOLE):
        if settings.get("MFA_MAIL_TRANSPORT") == "console":
            raise ConfigError(CONSOLE_MAIL_REFUSED)
        if settings.get("MFA_SMS_GATEWAY") == "console":
            raise ConfigError(CONSOLE_SMS_REFUSED)
    env_keys, hash_key = settings.get("MFA_ENCRYPTION_KEYS"), settings.get("MFA_HASH_KEY")
    if bool(env_keys) != bool(hash_key):
        raise ConfigError(KEYS_HALF_SET)
    if not env_keys and not settings.get("MFA_KEYS_FILE"):
        raise ConfigError(KEYS_NOT_SET)


def _host_name(name: str, setting: str) -> str:
    """``name`` as Host headers carry it (lower case, IDNA), or ConfigError."""
    try:
        ascii_name = name.strip().lower().encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ConfigError(f"{setting}: {name!r} is not a valid host name ({exc}).") from exc
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ConfigError(
            f"{setting}: {name!r} is not a valid host name: use letters, digits, dots and "
            "hyphens, at most 63 characters between dots."
        )
    return ascii_name


def base_url(value: str | None, *, production: bool) -> str:
    """MFA_BASE_URL checked, without a trailing slash: ``http(s)://host[:port]``."""
    if not value:
        if production:
            raise ConfigError(
                "MFA_BASE_URL is not set. Set it to the address staff open, e.g. "
                "MFA_BASE_URL=https://mfa.clinic.example: links in emails are built from "
                "it, and requests for any other host name are refused."
            )
        value = DEVELOPMENT_BASE_URL
    problem = f"MFA_BASE_URL must look like https://mfa.clinic.example, got {value!r}"
    parts = urlsplit(value.strip())
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{problem} (bad port).") from exc
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or ":" in parts.hostname  # IPv6: Werkzeug's trusted-host check cannot match it
    ):
        raise ConfigError(f"{problem}: a scheme and a host name, nothing after it.")
    host = _host_name(parts.hostname, "MFA_BASE_URL")
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def trusted_hosts(settings: Mapping[str, Any]) -> list[str]:
    """Flask's TRUSTED_HOSTS: MFA_BASE_URL's host, MFA_TRUSTED_HOSTS (comma separated names)
    and, in development, loopback. Ports are not compared (Werkzeug ignores them)."""
    extra = settings.get("MFA_TRUSTED_HOSTS") or ()
    if isinstance(extra, str):
        extra = extra.split(",")
    names = [urlsplit(settings["MFA_BASE_URL"]).hostname or ""]
    names += [_host_name(name, "MFA_TRUSTED_HOSTS") for name in extra if name.strip()]
    if settings["MFA_ENV"] != "production":
        names += DEVELOPMENT_HOSTS
    return list(dict.fromkeys(names))
