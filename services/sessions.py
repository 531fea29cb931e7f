"""Server-side sessions (AUTH-3, AUTH-6): create, load per request, promote, end.

The Flask cookie is signed but it is still the client's: it holds nothing but a random token
(and the CSRF token). Whether someone is signed in, or half-way through signing in, is decided
by the row that token names. Every step issues a new token and a new CSRF token.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from flask import current_app, g, session
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from models import User, UserSession, db
from models.sessions import ACTIVE, ENDED, PENDING, STEP_SETUP
from models.types import utcnow
from services import policy
from services.client import client_ip, user_agent

TOKEN_KEY = "sid"  # noqa: S105 - the cookie key, not a secret


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _new_token() -> bytes:
    """Clear the cookie session and put a fresh token in it; returns the token's hash.

    Clearing first means nothing from before this step (a planted token, an old CSRF token)
    survives into the next one.
    """
    token = secrets.token_urlsafe(32)
    session.clear()
    session[TOKEN_KEY] = token
    return token_hash(token)


def _open(user: User, state: str, now: datetime, **fields: object) -> UserSession:
    row = UserSession(
        token_hash=_new_token(),
        user_id=user.id,
        state=state,
        created_at=now,
        last_seen_at=now,
        ip=client_ip(),
        user_agent=user_agent(),
        **fields,
    )
    db.session.add(row)
    g.user_session = row
    return row


def start(user: User, *, method: str) -> UserSession:
    """A signed-in session at once: no second factor owed (policy, or a remembered device)."""
    now = utcnow()
    return _open(user, ACTIVE, now, signed_in_at=now, mfa_method=method, fresh_at=now)


def start_pending(
    user: User,
    *,
    step: str,
    next_url: str | None,
    skippable: bool = False,
    method: str | None = None,
) -> UserSession:
    """The password passed; the second step is still owed. Expires after a few minutes."""
    now = utcnow()
    return _open(
        user,
        PENDING,
        now,
        pending_step=step,
        pending_expires_at=now + current_app.config["MFA_PENDING_SIGN_IN_FOR"],
        pending_next=next_url,
        setup_skippable=skippable,
        fresh_at=now,
        # While pending: the method being asked for; after sign-in: the one that was used.
        mfa_method=method,
    )


# The statements of the sign-in hot path are built once, with bind parameters: building
# SQLAlchemy expressions anew costs more than running them (PERF-2).
_SESSIONS = UserSession.__table__.c
_PROMOTE = (
    # Core, not ORM: nothing in the session needs synchronising, and it is cheaper.
    update(UserSession.__table__)
    .where(
        _SESSIONS.id == bindparam("p_id"),
        _SESSIONS.state == PENDING,
        _SESSIONS.pending_expires_at > bindparam("p_now"),
        # A right code is not a counted try: it wins while fewer than the limit were wrong.
        _SESSIONS.failed_codes < bindparam("p_max_failed"),
    )
    .values(
        token_hash=bindparam("p_hash"),
        state=ACTIVE,
        created_at=bindparam("p_now"),
        signed_in_at=bindparam("p_now"),
        last_seen_at=bindparam("p_now"),
        fresh_at=bindparam("p_now"),
        pending_step=None,
        pending_expires_at=None,
        mfa_method=bindparam("p_method"),
    )
)
# The clinic's policy row comes along in the same SELECT: most requests that find a session
# go on to ask the policy (services/policy.current then answers without a query).
_CURRENT = policy.beside(
    select(UserSession)
    .where(UserSession.token_hash == bindparam("p_hash"), UserSession.state != ENDED)
    .options(joinedload(UserSession.user).joinedload(User.default_factor))
)


def promote(row: UserSession, *, method: str) -> bool:
    """Turn a pending session into a signed-in one under a new token.

    The UPDATE only matches a pending, unexpired row, so two racing requests cannot both
    complete the same sign-in. False means it was already used, ended or expired.
    """
    now = utcnow()
    result = db.session.execute(
        _PROMOTE,
        {
            "p_id": row.id,
            "p_now": now,
            "p_max_failed": current_app.config["MFA_WRONG_CODES_PER_SIGN_IN"],
            "p_hash": _new_token(),
            "p_method": method,
        },
    )
    if result.rowcount != 1:
        return False
    # Keep the in-memory row in step without another SELECT.
    for key, value in (
        ("state", ACTIVE),
        ("signed_in_at", now),
        ("created_at", now),
        ("last_seen_at", now),
        ("fresh_at", now),
        ("mfa_method", method),
    ):
        set_committed_value(row, key, value)
    g.user_session = row
    return True


def _expired(row: UserSession, now: datetime) -> str | None:
    cfg = current_app.config
    if row.state == PENDING:
        return (
            "pending_expired"
            if row.pending_expires_at is None or now >= row.pending_expires_at
            else None
        )
    if now - row.last_seen_at > cfg["MFA_SESSION_IDLE_TIMEOUT"]:
        return "idle_timeout"
    if now - row.created_at > cfg["MFA_SESSION_ABSOLUTE_TIMEOUT"]:
        return "absolute_timeout"
    return None


def current() -> UserSession | None:
    """The live (pending or active) session named by the cookie, or None.

    Loads the user, their role and default factor and the clinic's policy in the same query,
    so an MFA request needs no second read. A session found expired is ended on sight and
    ``g.session_ended`` says why.
    """
    if "user_session" in g:
        return g.user_session
    g.user_session = None
    token = session.get(TOKEN_KEY)
    if not isinstance(token, str) or not token or len(token) > 128:
        return None
    found = db.session.execute(_CURRENT, {"p_hash": token_hash(token)}).first()
    if found is None:
        return None
    row = found.UserSession
    policy.keep(found)
    now = utcnow()
    reason = _expired(row, now)
    if reason:
        end(row, reason)
        db.session.commit()
        g.session_ended = reason
        return None
    if (
        row.state == ACTIVE
        and now - row.last_seen_at > current_app.config["MFA_SESSION_TOUCH_EVERY"]
    ):
        db.session.execute(
            update(UserSession).where(UserSession.id == row.id).values(last_seen_at=now)
        )
        db.session.commit()
    g.user_session = row
    return row


def is_fresh(row: UserSession) -> bool:
    """Whether this session proved who it is (password or code) recently enough to change
    factors and settings (ACC-3). A pending sign-in has just entered its password."""
    if row.state == PENDING:
        return True
    limit = current_app.config["MFA_FRESH_AUTH_FOR"]
    return row.fresh_at is not None and utcnow() - row.fresh_at <= limit


def mark_fresh(row: UserSession) -> None:
    """The person just entered their password again: a new session id, and fresh from now."""
    now = utcnow()
    db.session.execute(
        update(UserSession)
        .where(UserSession.id == row.id)
        .values(token_hash=_new_token(), fresh_at=now, last_seen_at=now)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(row, "fresh_at", now)
    set_committed_value(row, "last_seen_at", now)


def owe_setup(row: UserSession) -> None:
    """A signed-in session that the policy now asks a second factor of goes back to the
    setup step, as if its password had just passed (the wizard then completes it)."""
    values = {
        "state": PENDING,
        "pending_step": STEP_SETUP,
        "pending_expires_at": utcnow() + current_app.config["MFA_PENDING_SIGN_IN_FOR"],
        "pending_next": None,
        "setup_skippable": False,
        "failed_codes": 0,
    }
    db.session.execute(
        update(UserSession)
        .where(UserSession.id == row.id, UserSession.state == ACTIVE)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    for key, value in values.items():
        set_committed_value(row, key, value)


def pending() -> UserSession | None:
    row = current()
    return row if row is not None and row.state == PENDING else None


def end(row: UserSession, reason: str, *, only_if_pending: bool = False) -> None:
    """End one session: its token is erased, so the cookie naming it is worthless.

    ``only_if_pending`` leaves alone a sign-in that a racing request has just completed.
    """
    stmt = (
        update(UserSession)
        .where(UserSession.id == row.id)
        .values(state=ENDED, token_hash=None, ended_at=utcnow(), end_reason=reason)
        .execution_options(synchronize_session=False)
    )
    if only_if_pending:
        stmt = stmt.where(UserSession.state == PENDING)
    db.session.execute(stmt)
    if g.get("user_session") is row:
        g.user_session = None


def end_current(reason: str = "signed_out") -> UserSession | None:
    row = current()
    if row is not None:
        end(row, reason)
    session.clear()
    g.user_session = None
    return row


def end_all_for(user_id: int, *, reason: str, keep: UserSession | None = None) -> int:
    """End every live session of a user, except ``keep``; returns how many ended."""
    stmt = (
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.state != ENDED)
        .values(state=ENDED, token_hash=None, ended_at=utcnow(), end_reason=reason)
        .execution_options(synchronize_session=False)
    )
    if keep is not None:
        stmt = stmt.where(UserSession.id != keep.id)
    return db.session.execute(stmt).rowcount or 0


def signed_in_for(user_id: int) -> list[UserSession]:
    """The user's signed-in sessions still within their idle and absolute limits, the most
    recently active first: the ones a cookie somewhere can still use."""
    cfg = current_app.config
    now = utcnow()
    return list(
        db.session.scalars(
            select(UserSession)
            .where(
                UserSession.user_id == user_id,
                UserSession.state == ACTIVE,
                UserSession.last_seen_at >= now - cfg["MFA_SESSION_IDLE_TIMEOUT"],
                UserSession.created_at >= now - cfg["MFA_SESSION_ABSOLUTE_TIMEOUT"],
            )
            .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
        )
    )


def other_of(user_id: int, session_id: int, *, keep: UserSession) -> UserSession | None:
    """The live session ``session_id`` if it is one of ``user_id``'s other than ``keep``:
    an id from a URL names nothing of anyone else's (and "this one" is signed out by the
    sign-out button, which also clears the cookie)."""
    return db.session.scalar(
        select(UserSession).where(
            UserSession.id == session_id,
            UserSession.user_id == user_id,
            UserSession.id != keep.id,
            UserSession.state != ENDED,
        )
    )


def load_user(user_id: str) -> User | None:
    """Flask-Login's user loader: the user only if the cookie's session is theirs and active."""
    row = current()
    if row is None or row.state != ACTIVE or str(row.user_id) != user_id or not row.user.active:
        return None
    return row.user


def choose_method(row: UserSession, method: str) -> None:
    """Switch a pending challenge to another method (the caller checked it is allowed)."""
    db.session.execute(
        update(UserSession)
        .where(UserSession.id == row.id, UserSession.state == PENDING)
        .values(mfa_method=method)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(row, "mfa_method", method)
