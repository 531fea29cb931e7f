"""Password sign-in and sign-out."""

from __future__ import annotations

from flask import request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, logout_user

from blueprints.auth import bp
from blueprints.auth.completion import complete_sign_in
from blueprints.auth.forms import SignInForm
from blueprints.htmx import redirect_to, render
from models import db
from models.sessions import STEP_CHALLENGE, STEP_SETUP
from models.types import utcnow
from services import audit, policy, sessions, signin, throttle
from services.challenge import deliver_sign_in_code
from services.client import client_ip
from services.passwords import hash_password, needs_rehash, verify_password
from services.redirects import safe_next
from services.signin import Next
from services.users import signing_in

GENERIC_ERROR = "That email address and password do not match an account."


def _render_sign_in(form: SignInForm, status: int = 200, **context: object) -> ResponseReturnValue:
    return render("auth/sign_in.html", "auth/_sign_in_form.html", status, form=form, **context)


@bp.get("/sign-in")
def sign_in() -> ResponseReturnValue:
    """The sign-in page."""
    if current_user.is_authenticated:
        return redirect_to(url_for("home.index"))
    form = SignInForm(next=safe_next(request.args.get("next")) or "")
    # Said by a query flag, not a flashed message: sign-out leaves no cookie to carry one.
    signed_out = request.args.get("signed_out") == "1"
    return _render_sign_in(form, notice="You have signed out." if signed_out else None)


@bp.post("/sign-in")
def sign_in_post() -> ResponseReturnValue:
    """Check the password; one message for every failure, with the same cost (AUTH-1).

    Cases: invalid form (422); throttled address or IP (429, no hash checked); wrong email or
    password, an API user, or a disabled account even with the right password (422, the same
    message, failure counted); success (new session, 303 or HX-Redirect to ``next`` or home).
    """
    form = SignInForm()
    if not form.validate_on_submit():
        return _render_sign_in(form, 422)
    email = form.email.data or ""
    keys = (throttle.email_key(email), throttle.ip_key(client_ip()))
    status = throttle.check(*keys)
    block = status.block
    if block is not None:
        audit.record("sign_in.throttled", ip_blocked=block.until is not None)
        db.session.commit()
        now = utcnow()
        response = _render_sign_in(form, 429, error=block.message(now))
        response.headers["Retry-After"] = str(block.retry_after(now))
        return response

    user = signing_in(email)
    password = form.password.data or ""
    # An API user has no password (ADM-10): it is checked against the dummy hash, as for an
    # unknown address, so the answer, its cost and the failure counted are a wrong password's.
    api_user = user is not None and not user.is_person
    stored = user.password_hash if user is not None and not api_user else None
    if not verify_password(stored, password) or user is None:
        throttle.record_failure(*keys)
        audit.record(
            "sign_in.refused_api_user" if api_user else "sign_in.password_failed", subject=user
        )
        db.session.commit()
        return _render_sign_in(form, 422, error=GENERIC_ERROR)

    if not user.active:
        # The same answer as a wrong password, or it would confirm the password to a guesser;
        # counted like one too, since it is a refused sign-in. Only the audit log tells them apart.
        throttle.record_failure(*keys)
        audit.record("sign_in.refused_inactive", subject=user)
        db.session.commit()
        return _render_sign_in(form, 422, error=GENERIC_ERROR)

    throttle.reset(keys[0], status=status)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    decision = signin.decide_and_claim(user, policy.current())
    audit.record(
        "sign_in.password_ok", subject=user, next=decision.next.value, reason=decision.reason
    )
    target = safe_next(form.next.data)
    if decision.next in (Next.SIGNED_IN, Next.REMEMBERED):
        return complete_sign_in(user, method=decision.method or "none", next_url=target)
    step = STEP_CHALLENGE if decision.next is Next.CHALLENGE else STEP_SETUP
    row = sessions.start_pending(
        user, step=step, next_url=target, skippable=decision.skippable, method=decision.method
    )
    db.session.commit()
    if decision.factor is not None:
        # An email or SMS challenge starts with the code on its way; if it cannot be sent
        # the challenge page says so and offers the other ways (OPS-5).
        deliver_sign_in_code(row, decision.factor)
    return redirect_to(url_for("mfa.challenge" if step == STEP_CHALLENGE else "mfa.setup"))


@bp.post("/sign-out")
def sign_out() -> ResponseReturnValue:
    """End this session on the server, then expire the cookie (CSRF checked by CSRFProtect).

    The cookie session is left empty, so Flask expires the cookie instead of rewriting it, and
    Clear-Site-Data empties the browser's cache and storage of this site. Not "cookies": that
    would also forget a remembered device, which is the user's to revoke.
    """
    row = sessions.end_current("signed_out")
    if row is not None:
        audit.record("sign_out", actor=row.user, subject=row.user, was=row.state)
    db.session.commit()
    logout_user()
    response = redirect_to(url_for("auth.sign_in", signed_out=1))
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response
