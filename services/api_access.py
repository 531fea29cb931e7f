"""API users and their tokens (ADM-10, seed 003): create, list, issue, revoke, authenticate.

An API user is a ``users`` row of kind "api": a service account for reports. It has no
usable password (the sign-in page refuses it exactly as a wrong password), is never asked for
a second factor and is no person to enrol. It reads the API with bearer tokens.

A token is ``cmfa_`` and 43 URL-safe characters: 256 bits from ``secrets``, and a prefix that
makes a leaked one recognisable (secret scanners, logs). It is shown once; the database keeps
its SHA-256 only. A fast unsalted hash is right here, unlike for passwords: a password is
guessable and needs argon2's cost per guess, but nobody can search 2**256 secrets however
cheap each try is, and a fast hash lets every request find its token with one indexed
equality. A copy of the database therefore holds no usable token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from models import ApiToken, Role, User, db
from models.api import ACTIVE, EXPIRED
from models.types import utcnow
from models.user import ADMINISTRATOR, KIND_API
from services import audit
from services.client import client_ip

TOKEN_PREFIX = "cmfa_"  # noqa: S105 - the recognisable start, not a secret
_TOKEN_SHAPE = re.compile(r"cmfa_[A-Za-z0-9_-]{43}")
# Not an argon2 hash, so it can never verify; the sign-in page does not even try it.
UNUSABLE_PASSWORD = "!api-user: no password; reads the API with tokens"  # noqa: S105
# Reserved by RFC 2606: no mail can ever be delivered to an API user.
EMAIL_DOMAIN = "api.invalid"
# The role an API user gets unless told otherwise; made when first needed (roles are data).
DEFAULT_ROLE = "Reporting"
DEFAULT_TOKEN_DAYS = 90
MAX_TOKEN_DAYS = 365
MAX_NAME = 80
MAX_LABEL = 80


class ApiAccessError(ValueError):
    """Input an admin can fix; the message says how, ``field`` which one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Refused(Exception):
    """Why a request's token opens nothing. ``error`` is RFC 6750's code: None when the
    request carried no bearer token at all (then the answer names no error)."""

    def __init__(self, reason: str, message: str, error: str | None = "invalid_token") -> None:
        super().__init__(message)
        self.reason = reason  # missing, malformed, unknown, expired, revoked, inactive
        self.message = message
        self.error = error


@dataclass(frozen=True)
class Issued:
    """A new token and its secret: the only time the secret exists outside the caller."""

    token: ApiToken
    secret: str


# --- API users -------------------------------------------------------------------------


def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


def email_for(name: str) -> str:
    """The API user's address, made from its name: never deliverable, and unique like every
    address, so two API users cannot share a name (even when two admins race)."""
    slug = _slug(name)
    if not slug:
        raise ApiAccessError("Use letters or digits in the name, e.g. Monthly report.", "name")
    return f"{slug}@{EMAIL_DOMAIN}"


def api_users() -> list[User]:
    return list(
        db.session.scalars(
            select(User).where(~User.is_person).order_by(func.lower(User.full_name), User.id)
        )
    )


def by_name(name: str) -> User | None:
    """The API user called ``name`` (as the command line names one)."""
    try:
        email = email_for(name)
    except ApiAccessError:
        return None
    return db.session.scalar(select(User).where(User.email == email, ~User.is_person))


def role_choices() -> list[str]:
    """Roles an API user may have: any but Administrator (an administrator who can never sign
    in would only confuse), with the default first even before it exists."""
    names = db.session.scalars(
        select(Role.name).where(Role.name != ADMINISTRATOR).order_by(Role.id)
    )
    return list(dict.fromkeys([DEFAULT_ROLE, *names]))


def _role(name: str) -> Role:
    wanted = name.strip()
    if wanted.lower() == ADMINISTRATOR.lower():
        raise ApiAccessError("An API user cannot be an Administrator.", "role")
    role = db.session.scalar(select(Role).where(func.lower(Role.name) == wanted.lower()))
    if role is not None:
        return role
    if wanted.lower() != DEFAULT_ROLE.lower():
        raise ApiAccessError(
            f"No role called {wanted!r}. Roles: {', '.join(role_choices())}.", "role"
        )
    role = Role(name=DEFAULT_ROLE)
    db.session.add(role)
    return role


def create_user(name: str, role: str = DEFAULT_ROLE, *, by: User | None = None, **via: str) -> User:
    """Add an API user, audited as done ``by`` an admin (or ``via="cli"``); the caller
    commits. ApiAccessError for a bad or taken name or role."""
    name = " ".join(name.split())
    if not name:
        raise ApiAccessError("Enter a name, e.g. Monthly report.", "name")
    if len(name) > MAX_NAME:
        raise ApiAccessError(f"Use at most {MAX_NAME} characters.", "name")
    email = email_for(name)
    taken = ApiAccessError("An API user with that name already exists.", "name")
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise taken
    user = User(
        email=email,
        full_name=name,
        password_hash=UNUSABLE_PASSWORD,
        role=_role(role),
        kind=KIND_API,
    )
    db.session.add(user)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError:
        raise taken from None
    audit.record(
        "admin.api_user_created", actor=by, subject=user, name=name, role=user.role.name, **via
    )
    return user


# --- tokens ------------------------------------------------------------------------------


def token_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def tokens_by_user(user_ids: list[int]) -> dict[int, list[ApiToken]]:
    """Each API user's tokens, newest first: one query for the whole page."""
    found: defaultdict[int, list[ApiToken]] = defaultdict(list)
    if user_ids:
        rows = db.session.scalars(
            select(ApiToken)
            .where(ApiToken.user_id.in_(user_ids))
            .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        )
        for token in rows:
            found[token.user_id].append(token)
    return dict(found)


def all_tokens() -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.id)))


def issue(
    user: User, label: str, days: int | None = None, *, by: User | None = None, **via: str
) -> Issued:
    """Make a token for the API user ``user``, valid ``days`` (default 90, at most 365),
    audited; the caller shows the secret once and commits."""
    if user.is_person:
        raise ApiAccessError("Tokens are only for API users.")
    label = " ".join(label.split())
    if not label:
        raise ApiAccessError("Enter a label, e.g. Power BI on the reporting server.", "label")
    if len(label) > MAX_LABEL:
        raise ApiAccessError(f"Use at most {MAX_LABEL} characters.", "label")
    days = DEFAULT_TOKEN_DAYS if days is None else days
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise ApiAccessError(f"Choose from 1 to {MAX_TOKEN_DAYS} days.", "days")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken(
        user_id=user.id,
        label=label,
        token_hash=token_hash(secret),
        created_at=now,
        created_by_id=by.id if by else None,
        expires_at=now + timedelta(days=days),
        last_used_ip="",
    )
    db.session.add(token)
    db.session.flush()
    audit.record(
        "admin.api_token_created",
        actor=by,
        subject=user,
        token_id=token.id,
        label=label,
        expires_at=token.expires_at.isoformat(timespec="seconds"),
        **via,
    )
    return Issued(token, secret)


def revoke(token: ApiToken, *, by: User | None = None, **via: str) -> bool:
    """Revoke ``token`` from now on, audited; False if it already was. The caller commits. A
    conditional UPDATE, so of two admins revoking at once exactly one is recorded."""
    now = utcnow()
    result = db.session.execute(
        update(ApiToken)
        .where(ApiToken.id == token.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by_id=by.id if by else None)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(token)
    if result.rowcount != 1:
        return False
    audit.record(
        "admin.api_token_revoked",
        actor=by,
        subject=token.user,
        token_id=token.id,
        label=token.label,
        **via,
    )
    return True


# --- authentication ------------------------------------------------------------------------

_BY_HASH = select(ApiToken).where(ApiToken.token_hash == bindparam("p_hash"))


def authenticate(authorization: str | None) -> ApiToken:
    """The live token named by an ``Authorization`` header, or Refused saying why.

    Only a bearer token opens the API (RFC 6750): no header, or another scheme (a browser's
    Basic credentials), is a request without one. The secret is looked up by its hash, so
    timing tells an attacker about the hash of their guess, never about a real secret.
    """
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Refused("missing", "Send an API token: Authorization: Bearer cmfa_...", error=None)
    secret = credentials.strip()
    if not _TOKEN_SHAPE.fullmatch(secret):
        raise Refused("malformed", "That is not an API token: cmfa_ and 43 more characters.")
    token = db.session.scalar(_BY_HASH, {"p_hash": token_hash(secret)})
    if token is None:
        raise Refused("unknown", "The API token is not valid.")
    status = token.status(utcnow())
    if status == EXPIRED:
        raise Refused(status, "The API token has expired.")
    if status != ACTIVE:
        raise Refused(status, "The API token has been revoked.")
    if not token.user.active:
        raise Refused("inactive", "The API user of this token is switched off.")
    return token


def touch(token: ApiToken) -> None:
    """Record when and from where the token was last used; at most once a minute (a write on
    every request would cost more than the request). Conditional, so racing workers write
    once. Commits."""
    now = utcnow()
    every = current_app.config["MFA_API_TOKEN_TOUCH_EVERY"]
    if token.last_used_at is not None and now - token.last_used_at < every:
        return
    db.session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token.id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - every),
        )
        .values(last_used_at=now, last_used_ip=client_ip())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
