"""The pages behind an emailed link that sets a password: a reset link (AUTH-7) or an
invitation. Both work the same way, so they share these steps.

The emailed link is opened once (``trade``) and exchanged for state in the session, so the
page where the password is chosen has a URL without the token; every later request checks
the link again (``opened``). When the password is set (``finished``), whoever was signed in on
this browser is signed out and the person is sent to sign in: a link never signs anyone in.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Response, flash, redirect, session, url_for
from flask_login import logout_user

from blueprints.auth.forms import ResetPasswordForm
from blueprints.htmx import redirect_to, render
from models import db
from services import emailed_links, sessions
from services.emailed_links import Link, Purpose

PAGE = "auth/reset_password.html"
PARTIAL = "auth/_reset_password_form.html"


@dataclass(frozen=True)
class LinkPage:
    purpose: Purpose
    # The signed session cookie carries an opened link as the SHA-256 of its token.
    session_key: str
    # The page the link is traded for, and its form's POST.
    endpoint: str
    post_endpoint: str
    # "reset" or "invitation": which words the shared templates show.
    words: str


def no_referrer(response: Response) -> Response:
    # Belt and braces: nothing on these pages may tell another page where the browser was.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def trade(page: LinkPage, token: str) -> Response:
    """Trade the emailed token for state in the session, then 303 to the page.

    A token left in the address bar would reach the browser history, the Referer of whatever
    the page loads and every log on the way. So the first request keeps only what the server
    needs: the SHA-256 of the token (what the database stores) in the signed session cookie,
    which the client can read but not forge without SECRET_KEY. The digest rather than the
    row id, because SQLite may hand a deleted row's id to a newer link, possibly someone
    else's. A dead or unknown token stores nothing, and the page then answers 410 without it
    in the URL.
    """
    token_hash = emailed_links.digest(token)
    if (
        token_hash is not None
        and emailed_links.usable_by_digest(token_hash, page.purpose) is not None
    ):
        session[page.session_key] = token_hash.hex()
    else:
        session.pop(page.session_key, None)
    return no_referrer(redirect(url_for(page.endpoint), code=303))


def opened(page: LinkPage) -> Link | None:
    """The link this browser opened, if it still works; forgets a dead one."""
    try:
        token_hash = bytes.fromhex(session.get(page.session_key, ""))
    except (TypeError, ValueError):
        token_hash = b""
    link = emailed_links.usable_by_digest(token_hash, page.purpose) if token_hash else None
    if link is None:
        session.pop(page.session_key, None)
    return link


def render_page(
    page: LinkPage,
    link: Link | None,
    form: ResetPasswordForm | None = None,
    status: int = 200,
    **context: object,
) -> Response:
    """The new-password form, or (410 Gone) a page saying the link no longer works: used,
    expired, mistyped or never issued all look the same."""
    if link is None:
        return no_referrer(render(PAGE, PARTIAL, 410, expired=True, link_page=page, **context))
    return no_referrer(
        render(
            PAGE,
            PARTIAL,
            status,
            expired=False,
            link_page=page,
            form=form or ResetPasswordForm(),
            email=link.user.email,
            **context,
        )
    )


def finished(page: LinkPage, message: str) -> Response:
    """The password is set: this browser is signed out and sent to sign in, with
    ``message``. The caller has committed the change."""
    session.pop(page.session_key, None)
    sessions.end_current(page.purpose.name)
    db.session.commit()
    logout_user()
    flash(message, "success")
    return redirect_to(url_for("auth.sign_in"))
