"""Server-side sessions (AUTH-6): create at sign-in, load per request, end on sign-out.

The Flask cookie is signed but it is still the client's: it holds nothing but a random token
(and the CSRF token). Whether someone is signed in is decided by the row that token names.
"""

from __future__ import annotations

import hashlib
import secrets

from flask import current_app, g, session
from sqlalchemy import delete, select, update

from models import User, UserSession, db
from models.types import utcnow
from services.client import client_ip, user_agent

TOKEN_KEY = "sid"  # noqa: S105 - the cookie key, not a secret


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def start(user: User) -> UserSession:
    """Open a new session for ``user`` under a fresh token and a fresh CSRF token.

    Clearing the cookie first means nothing from before sign-in (a planted token, an old
    CSRF token) survives into the signed-in session.
    """
    token = secrets.token_urlsafe(32)
    session.clear()
    session[TOKEN_KEY] = token
    now = utcnow()
    row = UserSession(
        token_hash=token_hash(token),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        ip=client_ip(),
        user_agent=user_agent(),
    )
    db.session.add(row)
    g.user_session = row
    return row


def current() -> UserSession | None:
    """The live session named by the cookie, or None. Expired rows are deleted on sight."""
    if "user_session" in g:
        return g.user_session
    g.user_session = None
    token = session.get(TOKEN_KEY)
    if not isinstance(token, str) or not token:
        return None
    row = db.session.scalar(select(UserSession).where(UserSession.token_hash == token_hash(token)))
    if row is None:
        return None
    now = utcnow()
    cfg = current_app.config
    if (
        now - row.last_seen_at > cfg["MFA_SESSION_IDLE_TIMEOUT"]
        or now - row.created_at > cfg["MFA_SESSION_ABSOLUTE_TIMEOUT"]
    ):
        db.session.delete(row)
        db.session.commit()
        g.session_expired = True
        return None
    if now - row.last_seen_at > cfg["MFA_SESSION_TOUCH_EVERY"]:
        db.session.execute(
            update(UserSession).where(UserSession.id == row.id).values(last_seen_at=now)
        )
        db.session.commit()
    g.user_session = row
    return row


def end_current() -> None:
    row = current()
    if row is not None:
        db.session.execute(delete(UserSession).where(UserSession.id == row.id))
    session.clear()
    g.user_session = None


def end_all_for(user_id: int, *, keep: UserSession | None = None) -> int:
    """End every session of a user, except ``keep``; returns how many ended."""
    stmt = delete(UserSession).where(UserSession.user_id == user_id)
    if keep is not None:
        stmt = stmt.where(UserSession.id != keep.id)
    return db.session.execute(stmt).rowcount or 0


def load_user(user_id: str) -> User | None:
    """Flask-Login's user loader: the user only if the cookie's session row is theirs."""
    row = current()
    if row is None or str(row.user_id) != user_id or not row.user.active:
        return None
    return row.user
