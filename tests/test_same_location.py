"""Prompt only once from the same location (DEV-3, seed 003).

A second factor passed from an address skips the prompt from that address for the set number
of days, for the people the rule applies to (the clinic's setting or their own, never
Administrators). The address is the socket's, or the trusted proxy's report: a forged
X-Forwarded-For neither claims a trusted address nor escapes one. A password change, a
factor added or replaced and a recovery code used forget every address.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask

from models import AuditEvent, MfaFactor, TrustedLocation, User, db
from services import account
from tests.conftest import PASSWORD, AuthActions, Mailbox, make_app, release_together
from tests.test_codes import last_code
from tests.test_password_reset import NEW_PASSWORD, ask, link_in, reset
from tests.test_wizard import secret_from_page

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
NURSE = "nurse@clinic.example"
HOME, SURGERY, PROXY = "203.0.113.7", "198.51.100.20", "10.0.0.2"
CHALLENGE = "/mfa/challenge"


@pytest.fixture
def same_location(set_policy):
    """same_location(on, days=30): the clinic's setting, as the admin page sets it."""

    def set_(on: bool, days: int = 30) -> None:
        set_policy(same_location=on, same_location_days=days)

    return set_


@dataclass(frozen=True)
class Nurse:
    id: int
    secret: str
    recovery_codes: list[str]


@pytest.fixture
def nurse(make_user, enrol_totp, set_policy, same_location) -> Nurse:
    set_policy(mode="required", methods="totp,email")
    same_location(True)
    user_id = make_user(NURSE)
    secret, codes = enrol_totp(user_id, with_recovery=True)
    return Nurse(user_id, secret, codes)


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(T0, tick=False) as coordinates:
        yield coordinates


def at(browser: AuthActions, ip: str, forwarded_for: str | None = None) -> AuthActions:
    """Every request of ``browser`` from now on comes from ``ip``, with this X-Forwarded-For."""
    browser.client.environ_base["REMOTE_ADDR"] = ip
    browser.client.environ_base.pop("HTTP_X_FORWARDED_FOR", None)
    if forwarded_for is not None:
        browser.client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return browser


def pass_challenge(browser: AuthActions, secret: str, clock) -> None:
    """Sign in with the authenticator, then out. A new 30-second step each time: a code is
    never accepted twice."""
    clock.shift(30)
    assert browser.login().headers["Location"] == CHALLENGE
    assert browser.verify_totp(pyotp.TOTP(secret).now()).headers["Location"] == "/"
    browser.logout()


def after_password(browser: AuthActions, password: str = PASSWORD) -> str:
    """Where the password leads ("/": the prompt was skipped, and the person is signed in);
    then sign out again."""
    where = browser.login(password=password).headers["Location"]
    if where == "/":
        assert browser.client.get("/").status_code == 200
    browser.logout()
    return where


def trusted_addresses(app: Flask) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(sa.select(TrustedLocation.ip)))


def test_the_same_address_skips_the_prompt(app, auth, nurse, clock):
    pass_challenge(at(auth, HOME), nurse.secret, clock)
    assert after_password(auth) == "/"
    with app.app_context():
        ok = db.session.scalars(
            sa.select(AuditEvent.details)
            .where(AuditEvent.event == "sign_in.password_ok")
            .order_by(AuditEvent.id)
        ).all()
        succeeded = db.session.scalars(
            sa.select(AuditEvent.details)
            .where(AuditEvent.event == "sign_in.succeeded")
            .order_by(AuditEvent.id)
        ).all()
    assert ok[-1] == {"next": "remembered", "reason": "same_location"}
    assert [s["method"] for s in succeeded] == ["totp", "location"]
    assert trusted_addresses(app) == [HOME]


def test_another_address_is_prompted(app, auth, nurse, clock):
    pass_challenge(at(auth, HOME), nurse.secret, clock)
    assert after_password(at(auth, SURGERY)) == CHALLENGE
    pass_challenge(auth, nurse.secret, clock)
    assert after_password(at(auth, HOME)) == "/"
    assert after_password(at(auth, SURGERY)) == "/"


@pytest.mark.parametrize(
    ("clinic_on", "theirs", "role", "skipped"),
    [
        (False, None, "Practitioner", False),  # off by default
        (True, None, "Practitioner", True),
        (True, False, "Practitioner", False),  # turned off for one person
        (False, True, "Practitioner", True),  # turned on for one person
        (True, None, "Administrator", False),  # never for Administrators
        (True, True, "Administrator", False),
    ],
    ids=["clinic_off", "clinic_on", "off_for_them", "on_for_them", "admin", "admin_asks"],
)
def test_whom_it_applies_to(
    app,
    auth,
    make_user,
    enrol_totp,
    set_policy,
    same_location,
    clock,
    clinic_on,
    theirs,
    role,
    skipped,
):
    set_policy(mode="required")
    same_location(clinic_on)
    secret, _ = enrol_totp(make_user(NURSE, role=role, same_location=theirs))
    pass_challenge(at(auth, HOME), secret, clock)
    assert after_password(auth) == ("/" if skipped else CHALLENGE)
    assert trusted_addresses(app) == ([HOME] if skipped else [])


def test_a_forged_forwarded_for_neither_claims_nor_escapes_an_address(app, auth, nurse, clock):
    """Without MFA_TRUSTED_PROXIES the socket's address is the only one."""
    pass_challenge(at(auth, HOME, forwarded_for=SURGERY), nurse.secret, clock)
    assert trusted_addresses(app) == [HOME]
    assert after_password(at(auth, SURGERY, forwarded_for=HOME)) == CHALLENGE
    assert after_password(at(auth, HOME, forwarded_for=SURGERY)) == "/"


@pytest.fixture
def behind_proxy(database_url: str, app: Flask) -> Iterator[Flask]:
    """The app as deployed behind one reverse proxy, on the test database."""
    proxied = make_app(database_url, MFA_TRUSTED_PROXIES=1)
    yield proxied
    with proxied.app_context():
        db.session.remove()
        db.engine.dispose()


def test_behind_a_trusted_proxy_its_header_counts(app, behind_proxy, nurse, clock):
    browser = AuthActions(behind_proxy.test_client())
    pass_challenge(at(browser, PROXY, forwarded_for=HOME), nurse.secret, clock)
    assert trusted_addresses(app) == [HOME]
    assert after_password(at(browser, PROXY, forwarded_for=HOME)) == "/"
    assert after_password(at(browser, PROXY, forwarded_for=SURGERY)) == CHALLENGE
    # The client's own header comes first; the proxy appends the address it saw.
    assert after_password(at(browser, PROXY, forwarded_for=f"{HOME}, {SURGERY}")) == CHALLENGE
    assert after_password(at(browser, PROXY, forwarded_for=f"{SURGERY}, {HOME}")) == "/"


def test_expires_after_the_set_days(auth, nurse, same_location, clock):
    same_location(True, days=7)
    pass_challenge(at(auth, HOME), nurse.secret, clock)
    clock.shift(timedelta(days=7, minutes=-1))
    assert after_password(auth) == "/"
    clock.shift(timedelta(minutes=2))
    assert after_password(auth) == CHALLENGE


def test_a_shortened_setting_applies_to_addresses_trusted_before(auth, nurse, same_location, clock):
    pass_challenge(at(auth, HOME), nurse.secret, clock)
    same_location(True, days=7)
    clock.shift(timedelta(days=8))
    assert after_password(auth) == CHALLENGE


def test_a_lengthened_setting_does_not_extend_addresses_trusted_before(
    auth, nurse, same_location, clock
):
    same_location(True, days=7)
    pass_challenge(at(auth, HOME), nurse.secret, clock)
    same_location(True, days=30)
    clock.shift(timedelta(days=8))
    assert after_password(auth) == CHALLENGE


def test_forgotten_after_a_password_change(app, auth, nurse, clock):
    pass_challenge(at(auth, HOME), nurse.secret, clock)
    new_password = "a brand new password 2026"
    with app.app_context():
        account.change_password(db.session.get(User, nurse.id), new_password)
        db.session.commit()
    assert trusted_addresses(app) == []
    assert after_password(auth, password=new_password) == CHALLENGE


def test_forgotten_after_a_password_reset(app, auth, nurse, clock, mailbox):
    pass_challenge(at(auth, HOME), nurse.secret, clock)
    ask(auth)
    assert reset(auth, link_in(mailbox)).headers["Location"] == "/sign-in"
    assert trusted_addresses(app) == []
    assert after_password(auth, password=NEW_PASSWORD) == CHALLENGE


def test_forgotten_after_an_mfa_reset(app, auth, nurse, clock, runner, enrol_totp):
    pass_challenge(at(auth, HOME), nurse.secret, clock)
    assert runner.invoke(args=["users", "reset-mfa", NURSE]).exit_code == 0
    assert trusted_addresses(app) == []
    enrol_totp(nurse.id)
    assert after_password(auth) == CHALLENGE


def _replace_the_app(browser: AuthActions, mailbox: Mailbox) -> None:
    browser.post("/mfa/setup", {"method": "totp"})
    secret = secret_from_page(browser.client.get("/mfa/setup/app").get_data(as_text=True))
    proved = browser.post("/mfa/setup/app/code", {"code": pyotp.TOTP(secret).now()})
    assert proved.status_code == 303


def _add_email(browser: AuthActions, mailbox: Mailbox) -> None:
    browser.post("/mfa/setup", {"method": "email"})
    assert browser.post("/mfa/setup/email", {"email": NURSE}).status_code == 303
    assert browser.post("/mfa/setup/email/code", {"code": last_code(mailbox)}).status_code == 303


@pytest.mark.parametrize("change", [_replace_the_app, _add_email], ids=["replaced", "added"])
def test_forgotten_after_a_factor_is_added_or_replaced(app, auth, nurse, clock, mailbox, change):
    pass_challenge(at(auth, HOME), nurse.secret, clock)
    assert auth.login().headers["Location"] == "/"  # trusted: in without a code
    clock.shift(30)
    change(auth, mailbox)
    assert trusted_addresses(app) == []
    auth.logout()
    assert after_password(auth) == CHALLENGE


def test_forgotten_after_a_recovery_code_is_used(app, auth, nurse, clock):
    pass_challenge(at(auth, HOME), nurse.secret, clock)
    at(auth, SURGERY).login()
    used = auth.post("/mfa/challenge/recovery", {"code": nurse.recovery_codes[0]})
    assert used.headers["Location"] == "/"
    auth.logout()
    # The recovery code forgot HOME and trusted nowhere: it is an emergency, not a place.
    assert trusted_addresses(app) == []
    assert after_password(at(auth, HOME)) == CHALLENGE
    assert after_password(at(auth, SURGERY)) == CHALLENGE


def _challenge_page(browser: AuthActions) -> str:
    browser.login()
    page = browser.client.get(CHALLENGE).get_data(as_text=True)
    browser.logout()
    return re.sub(r'(name="csrf[-_]token"[^>]*(?:content|value))="[^"]+"', r"\1", page)


def test_the_challenge_page_does_not_tell_the_rule(app, auth, nurse, same_location, clock):
    """Nothing on it says that passing here will skip it next time from this place: the page
    is the same with the rule on and off, and names no location or address."""
    at(auth, HOME)
    with_rule = _challenge_page(auth)
    same_location(False)
    assert _challenge_page(auth) == with_rule
    text = re.sub(r"<[^>]+>", " ", with_rule).lower()
    for word in ("location", "address", "same place", "this network", " ip "):
        assert word not in text, word


def test_two_sign_ins_at_once_from_one_address(app, nurse, clock, mailbox):
    """Both pass their second factor at the same moment (one the app, one an emailed code):
    both are signed in, and the address is trusted once (an upsert, not a failed insert)."""
    with app.app_context():
        db.session.add(MfaFactor(user_id=nurse.id, kind="email", target=NURSE))
        db.session.commit()
    desk, laptop = (
        at(AuthActions(app.test_client()), HOME),
        at(AuthActions(app.test_client()), HOME),
    )
    assert desk.login().headers["Location"] == CHALLENGE
    assert laptop.login().headers["Location"] == CHALLENGE
    laptop.post("/mfa/challenge/method", {"method": "email"}, page=CHALLENGE)
    posts = [
        (desk, {"code": pyotp.TOTP(nurse.secret).now()}),
        (laptop, {"code": last_code(mailbox)}),
    ]
    tokens = [b.csrf_token(CHALLENGE) for b, _ in posts]
    statuses = release_together(
        [
            lambda b=b, data=data, token=token: b.client.post(
                CHALLENGE, data={"csrf_token": token, **data}
            )
            for (b, data), token in zip(posts, tokens, strict=True)
        ]
    )
    assert statuses == [303, 303]
    assert trusted_addresses(app) == [HOME]
    assert after_password(desk) == "/"
