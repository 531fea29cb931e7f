"""What the security-page tests share: ``world``, a person with an authenticator app (default),
an email factor and recovery codes, signed in at the desk (a remembered device) and on a
phone, under a stopped clock."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from models import (
    AuditEvent,
    MfaFactor,
    MfaSetup,
    RecoveryCode,
    RememberedDevice,
    TrustedLocation,
    User,
    UserSession,
    db,
)
from tests.conftest import AuthActions, Mailbox

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
NURSE = "nurse@clinic.example"
MOBILE = "+61412345678"
PAGE = "/account/security"
CODE_RE = re.compile(r"\b(\d{6})\b")
KEY_RE = re.compile(r'<p class="secret-key"[^>]*><code>([A-Z2-7 ]+)</code>')


def html(response) -> str:
    return response.get_data(as_text=True)


def browser(app) -> AuthActions:
    return AuthActions(app.test_client())


def sign_in(b: AuthActions, secret: str, clock, **extra: Any) -> None:
    """Password, then the app's code of a new time step (a step is accepted once)."""
    clock.shift(timedelta(seconds=30))
    assert b.login().headers["Location"] == "/mfa/challenge"
    assert b.verify_totp(pyotp.TOTP(secret).now(), **extra).headers["Location"] == "/"


def post(b: AuthActions, path: str, data: dict[str, str] | None = None, **kw: Any):
    """A form on the security page, posted with that page's CSRF token."""
    return b.post(path, data or {}, page=PAGE, **kw)


def add_factor(app, user_id: int, kind: str, target: str, *, default: bool = False) -> int:
    with app.app_context():
        factor = MfaFactor(user_id=user_id, kind=kind, is_default=default, target=target)
        db.session.add(factor)
        db.session.commit()
        return factor.id


def last_code(mailbox: Mailbox, address: str = NURSE) -> str:
    return CODE_RE.search(Mailbox.text(mailbox.to(address)[-1])).group(1)


def last_sms(inbox, number: str) -> str:
    return CODE_RE.search(inbox.to(number)[-1]["body"]).group(1)


def subjects(mailbox: Mailbox, address: str = NURSE) -> list[str]:
    return [m["Subject"] for m in mailbox.to(address)]


def audited(app, event: str) -> list[AuditEvent]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)
            )
        )


def state(app, user_id: int) -> tuple:
    """Everything a change on the security page could touch, to compare before and after."""
    with app.app_context():

        def rows(*columns, where):
            return sorted(db.session.execute(sa.select(*columns).where(where)).all())

        return (
            rows(
                MfaFactor.id,
                MfaFactor.kind,
                MfaFactor.is_default,
                MfaFactor.target,
                MfaFactor.secret_encrypted,
                where=MfaFactor.user_id == user_id,
            ),
            rows(
                RecoveryCode.code_hash, RecoveryCode.used_at, where=RecoveryCode.user_id == user_id
            ),
            rows(RememberedDevice.id, where=RememberedDevice.user_id == user_id),
            rows(UserSession.id, UserSession.state, where=UserSession.user_id == user_id),
            rows(MfaSetup.kind, MfaSetup.stage, where=MfaSetup.user_id == user_id),
            rows(TrustedLocation.ip, where=TrustedLocation.user_id == user_id),
            db.session.get(User, user_id).password_hash,
        )


def session_ids(app, user_id: int) -> list[int]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(UserSession.id)
                .where(UserSession.user_id == user_id, UserSession.state == "active")
                .order_by(UserSession.id)
            )
        )


@dataclass
class World:
    app: Any
    uid: int
    secret: str
    codes: list[str]
    desk: AuthActions  # this browser: the one on the security page
    phone: AuthActions  # another session of the same person
    clock: Any
    app_id: int
    email_id: int
    device_id: int
    desk_session: int
    phone_session: int


@pytest.fixture
def world(app, make_user, enrol_totp, set_policy, mailbox, sms_inbox) -> Iterator[World]:
    set_policy(mode="optional", methods="totp,email,sms", remember_days=90)
    uid = make_user(NURSE, full_name="Nico Nurse", mobile_number=MOBILE)
    secret, codes = enrol_totp(uid, with_recovery=True)
    email_id = add_factor(app, uid, "email", NURSE)
    desk, phone = browser(app), browser(app)
    with time_machine.travel(T0, tick=False) as clock:
        sign_in(desk, secret, clock, remember="y")
        sign_in(phone, secret, clock)
        with app.app_context():
            app_id = db.session.scalar(sa.select(MfaFactor.id).where(MfaFactor.kind == "totp"))
            device_id = db.session.scalar(sa.select(RememberedDevice.id))
        desk_session, phone_session = session_ids(app, uid)
        mailbox.clear()
        yield World(
            app,
            uid,
            secret,
            codes,
            desk,
            phone,
            clock,
            app_id,
            email_id,
            device_id,
            desk_session,
            phone_session,
        )
