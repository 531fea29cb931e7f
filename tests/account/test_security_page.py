"""The security page (ACC-1 to ACC-3, AUTH-6, DEV-2): what it shows, who may reach it, and
the rules every change obeys: a fresh sign-in, a CSRF token, an audit row and an email."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import pyotp
import pytest
import sqlalchemy as sa

from models import (
    MfaFactor,
    RecoveryCode,
    RememberedDevice,
    Role,
    TrustedLocation,
    UserSession,
    db,
)
from services import localtime
from services.account import ONLY_WAY_REQUIRED
from tests.account.conftest import (
    MOBILE,
    NURSE,
    PAGE,
    World,
    add_factor,
    audited,
    browser,
    html,
    post,
    session_ids,
    sign_in,
    state,
    subjects,
)
from tests.conftest import PASSWORD

NEW_PASSWORD = "a much longer new passphrase"


# ---------------------------------------------------------------------------------------
# What the page shows (ACC-1)


def spend_recovery_codes(app, count: int) -> None:
    with app.app_context():
        db.session.execute(
            sa.update(RecoveryCode)
            .where(RecoveryCode.id.in_(sa.select(RecoveryCode.id).limit(count)))
            .values(used_at=localtime.utcnow())
        )
        db.session.commit()


def test_the_page_lists_factors_codes_devices_and_sessions(app, world: World):
    spend_recovery_codes(app, 6)
    with app.app_context():
        app_factor = db.session.get(MfaFactor, world.app_id)
        added = localtime.when(app_factor.created_at)
        used = localtime.when(app_factor.last_used_at)
    page = html(world.desk.client.get(PAGE))
    # Factors: the registry's labels, where codes go (masked), when added and last used.
    assert "<strong>Authenticator app</strong>" in page and "<strong>Email</strong>" in page
    assert "n****@clinic.example" in page and NURSE not in page.split("Two-step sign-in")[1]
    assert added in page and used in page
    assert page.count('<span class="badge">Default</span>') == 1
    assert "On.</strong> After your password you are asked for a code from: Authenticator app" in (
        page
    )
    assert "Optional for you: your clinic offers it" in page
    # Recovery codes: 4 left, with the warning at 3 or fewer only.
    assert "You have <strong>4</strong> recovery codes left" in page
    assert "alert-warning" not in page
    # The remembered device of this browser, and both sessions, this one marked.
    assert page.count("This browser") == 2
    assert page.count("<dt>Address</dt><dd>127.0.0.1</dd>") == 2
    assert "Sign out all other devices" in page
    assert f"/account/security/sessions/{world.phone_session}/end" in page
    assert f"/account/security/sessions/{world.desk_session}/end" not in page


def test_few_recovery_codes_are_warned_about(app, world: World):
    spend_recovery_codes(app, 7)
    page = html(world.desk.client.get(PAGE))
    assert '<p class="alert alert-warning">You have only 3 recovery codes left.' in page


@pytest.mark.parametrize(
    ("override", "role_mode", "role_from", "sentence"),
    [
        ("default", "default", None, "Optional for you: your clinic offers it"),
        ("exempt", "default", None, "Not required for you: an administrator has exempted you."),
        ("required", "default", None, "Required for you by an administrator."),
        ("default", "off", None, "Not required for you: the Practitioner role has it off."),
        (
            "default",
            "required",
            date(2027, 2, 1),
            "Required for you from 1 February 2027 (the Practitioner role's rollout)",
        ),
        ("default", "required", date(2026, 11, 1), "Required for the Practitioner role since"),
    ],
)
def test_the_page_says_what_the_clinic_asks_of_you(
    app, world: World, override, role_mode, role_from, sentence
):
    """requirement.of decides; the page says it to "you", with the date."""
    with app.app_context():
        role = db.session.scalar(sa.select(Role).where(Role.name == "Practitioner"))
        role.mfa_mode, role.mfa_required_from = role_mode, role_from
        db.session.execute(
            sa.text("UPDATE users SET mfa_override = :o WHERE id = :i"),
            {"o": override, "i": world.uid},
        )
        db.session.commit()
    assert sentence in html(world.desk.client.get(PAGE))


def test_every_signed_in_person_has_the_link_in_the_header(world: World):
    home = html(world.desk.client.get("/"))
    assert '<a href="/account/security">Security</a>' in home and ">Admin</a>" not in home
    assert world.desk.client.get("/account").headers["Location"] == PAGE
    page = html(world.desk.client.get(PAGE))
    assert '<a href="/account/security" aria-current="page">Security</a>' in page


def test_signed_out_and_pending_sign_ins_cannot_reach_it(app, world: World):
    stranger = browser(app)
    assert stranger.client.get(PAGE).headers["Location"].startswith("/sign-in")
    # Password passed, code not yet: every /account URL sends it back to the challenge.
    assert stranger.login().headers["Location"] == "/mfa/challenge"
    assert stranger.client.get(PAGE).headers["Location"] == "/mfa/challenge"
    token = stranger.csrf_token("/mfa/challenge")
    for path in (
        f"{PAGE}/sessions/end-others",
        f"{PAGE}/factors/{world.app_id}/remove",
        f"{PAGE}/password",
    ):
        answer = stranger.client.post(path, data={"csrf_token": token, "confirmed": "yes"})
        assert answer.status_code == 303 and answer.headers["Location"] == "/mfa/challenge"
    assert session_ids(app, world.uid) == [world.desk_session, world.phone_session]
    assert len(state(app, world.uid)[0]) == 2


def test_without_javascript_and_with_htmx_from_the_same_url(world: World):
    plain = world.desk.client.get(PAGE)
    partial = world.desk.client.get(PAGE, headers={"HX-Request": "true"})
    assert "<html" in html(plain) and plain.headers["Cache-Control"] == "no-store"
    assert "HX-Request" in plain.headers["Vary"]
    # The page has no partial of its own; an htmx GET of it is the page, for the history.
    assert '<body hx-history="false">' in html(partial)


# ---------------------------------------------------------------------------------------
# Every change: fresh sign-in, CSRF, audit row, email (ACC-2, ACC-3)


@dataclass(frozen=True)
class Change:
    name: str
    path: Callable[[World], str]
    event: str
    details: Callable[[World], dict]
    subject: str | None  # the email; None when the change itself sends none yet
    location: Callable[[World], str]
    data: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[World], None] | None = None

    def set_up(self, w: World) -> tuple:
        """Get ``w`` ready for this change; returns the state a refusal must leave."""
        if self.prepare:
            self.prepare(w)
        return state(w.app, w.uid)

    def assert_not_made(self, w: World, before: tuple, mailbox) -> None:
        assert state(w.app, w.uid) == before
        assert audited(w.app, self.event) == [] and mailbox.messages == []


def _only_the_app(w: World) -> None:
    with w.app.app_context():
        db.session.execute(sa.delete(MfaFactor).where(MfaFactor.id == w.email_id))
        db.session.commit()


def _page(w: World) -> str:
    """Back to the page, with the message on top."""
    return PAGE


CHANGES = [
    Change(
        "make_default",
        lambda w: f"{PAGE}/factors/{w.email_id}/default",
        "mfa.default_changed",
        lambda w: {"method": "email"},
        "Your sign-in code now comes another way",
        _page,
    ),
    Change(
        "remove",
        lambda w: f"{PAGE}/factors/{w.email_id}/remove",
        "mfa.factor_removed",
        lambda w: {"method": "email", "turned_off": False, "devices_forgotten": 1},
        "Email was removed from your two-step sign-in",
        _page,
    ),
    Change(
        "turn_off",
        lambda w: f"{PAGE}/factors/{w.app_id}/remove",
        "mfa.factor_removed",
        lambda w: {"method": "totp", "turned_off": True, "devices_forgotten": 1},
        "Two-step sign-in was removed from your account",
        _page,
        data={"confirmed": "yes"},
        prepare=_only_the_app,
    ),
    Change(
        "replace",
        lambda w: f"{PAGE}/factors/{w.email_id}/replace",
        "mfa.setup_started",
        lambda w: {"method": "email", "replacing": True},
        None,  # emailed when the new address is proved (tests/test_account_factors.py)
        lambda w: "/mfa/setup/email",
    ),
    Change(
        "new_recovery_codes",
        lambda w: f"{PAGE}/recovery-codes",
        "recovery.codes_replaced",
        lambda w: {"count": 10},
        "You have new recovery codes",
        lambda w: f"{PAGE}/recovery-codes",
    ),
    Change(
        "forget_device",
        lambda w: f"{PAGE}/devices/{w.device_id}/forget",
        "device.forgotten",
        lambda w: {"device_id": w.device_id, "label": "Browser on unknown system"},
        "A remembered device was forgotten",
        _page,
    ),
    Change(
        "forget_devices",
        lambda w: f"{PAGE}/devices/forget",
        "device.forgotten_all",
        lambda w: {"count": 1},
        "Your remembered devices were forgotten",
        _page,
    ),
    Change(
        "end_session",
        lambda w: f"{PAGE}/sessions/{w.phone_session}/end",
        "session.ended_by_user",
        lambda w: {"session_id": w.phone_session, "browser": "Browser on unknown system"},
        "A device was signed out of your account",
        _page,
    ),
    Change(
        "end_other_sessions",
        lambda w: f"{PAGE}/sessions/end-others",
        "session.ended_others",
        lambda w: {"sessions": 1, "devices": 1},
        "Your other devices were signed out",
        _page,
    ),
    Change(
        "password",
        lambda w: f"{PAGE}/password",
        "password.changed",
        lambda w: {"via": "account"},
        "Your password was changed",
        _page,
        data={"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    ),
]
IDS = [change.name for change in CHANGES]


@pytest.mark.parametrize("change", CHANGES, ids=IDS)
def test_each_change_needs_a_sign_in_from_the_last_ten_minutes(
    app, world: World, mailbox, change: Change
):
    before = change.set_up(world)
    world.clock.shift(timedelta(minutes=10, seconds=1))
    token = world.desk.csrf_token(PAGE)  # reading the page needs no fresh sign-in
    answer = world.desk.client.post(
        change.path(world),
        data={"csrf_token": token, **change.data},
        headers={"Referer": f"http://localhost{PAGE}"},
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/reauthenticate?next={PAGE}"
    change.assert_not_made(world, before, mailbox)


@pytest.mark.parametrize("change", CHANGES, ids=IDS)
def test_each_change_needs_its_csrf_token(app, world: World, mailbox, change: Change):
    before = change.set_up(world)
    answer = world.desk.client.post(change.path(world), data=change.data)
    assert answer.status_code == 400
    assert "This form had expired or came from somewhere else" in html(answer)
    change.assert_not_made(world, before, mailbox)


@pytest.mark.parametrize("change", CHANGES, ids=IDS)
def test_each_change_is_audited_and_emailed(app, world: World, mailbox, change: Change):
    before = change.set_up(world)
    answer = post(world.desk, change.path(world), change.data)
    assert answer.status_code == 303
    assert answer.headers["Location"] == change.location(world)
    assert state(app, world.uid) != before
    [event] = audited(app, change.event)
    assert event.actor_id == event.subject_id == world.uid
    assert event.details == change.details(world)
    if change.subject is None:
        assert mailbox.messages == []
    else:
        assert subjects(mailbox) == [change.subject]
        text = mailbox.text(mailbox.to(NURSE)[0])
        assert "When: " in text and "From: 127.0.0.1" in text


def test_the_stale_change_comes_back_after_the_password(app, world: World):
    """Re-authenticating returns to the security page, and the change then goes through."""
    world.clock.shift(timedelta(minutes=11))
    assert world.desk.client.get(f"{PAGE}/password").headers["Location"] == (
        f"/reauthenticate?next={PAGE}/password"
    )
    back = world.desk.post(
        "/reauthenticate", {"password": PASSWORD, "next": PAGE}, page="/reauthenticate"
    )
    assert back.headers["Location"] == PAGE
    assert post(world.desk, f"{PAGE}/devices/forget").headers["Location"] == PAGE


# ---------------------------------------------------------------------------------------
# Ids in URLs belong to the person (SEC-2)


def test_someone_elses_ids_are_404_and_change_nothing(app, world: World, make_user, enrol_totp):
    other_id = make_user("porter@clinic.example")
    other_secret, _ = enrol_totp(other_id)
    porter = browser(app)
    porter.login("porter@clinic.example")
    world.clock.shift(timedelta(seconds=30))
    porter.verify_totp(pyotp.TOTP(other_secret).now(), remember="y")
    with app.app_context():
        theirs = {
            "factor": db.session.scalar(
                sa.select(MfaFactor.id).where(MfaFactor.user_id == other_id)
            ),
            "device": db.session.scalar(
                sa.select(RememberedDevice.id).where(RememberedDevice.user_id == other_id)
            ),
            "session": db.session.scalar(
                sa.select(UserSession.id).where(UserSession.user_id == other_id)
            ),
        }
    mine, others = state(app, world.uid), state(app, other_id)
    for path in (
        f"{PAGE}/factors/{theirs['factor']}/default",
        f"{PAGE}/factors/{theirs['factor']}/replace",
        f"{PAGE}/factors/{theirs['factor']}/remove",
        f"{PAGE}/devices/{theirs['device']}/forget",
        f"{PAGE}/sessions/{theirs['session']}/end",
        f"{PAGE}/sessions/{world.desk_session}/end",  # this one: "Sign out" does that
        f"{PAGE}/factors/999999/remove",
        f"{PAGE}/devices/999999/forget",
    ):
        answer = post(world.desk, path, {"confirmed": "yes"})
        assert answer.status_code == 404, path
        assert "Page not found" in html(answer)
    assert post(world.desk, f"{PAGE}/factors/x/remove").status_code == 404
    assert state(app, world.uid) == mine and state(app, other_id) == others
    assert porter.client.get("/").status_code == 200


# ---------------------------------------------------------------------------------------
# Sessions and devices (AUTH-6, DEV-2)


def test_signing_out_another_session_refuses_its_cookie_at_once(app, world: World):
    assert world.phone.client.get("/").status_code == 200
    answer = post(world.desk, f"{PAGE}/sessions/{world.phone_session}/end")
    assert answer.headers["Location"] == PAGE
    refused = world.phone.client.get("/")
    assert refused.status_code == 303 and refused.headers["Location"].startswith("/sign-in")
    assert "Browser on unknown system: signed out." in html(world.desk.client.get(PAGE))
    assert session_ids(app, world.uid) == [world.desk_session]


def test_sign_out_all_other_devices(app, world: World, make_user):
    laptop = browser(app)
    sign_in(laptop, world.secret, world.clock)
    with app.app_context():
        db.session.add(
            TrustedLocation(
                user_id=world.uid, ip="127.0.0.1", expires_at=localtime.utcnow() + timedelta(1)
            )
        )
        db.session.commit()
    answer = post(world.desk, f"{PAGE}/sessions/end-others", headers={"HX-Request": "true"})
    assert answer.status_code == 200
    body = html(answer)
    assert "Signed out 2 other sessions. 1 remembered device forgotten." in body
    assert '<section id="devices"' in body and 'hx-swap-oob="true"' in body
    for other in (world.phone, laptop):
        assert other.client.get("/").headers["Location"].startswith("/sign-in")
    assert world.desk.client.get(PAGE).status_code == 200
    assert session_ids(app, world.uid) == [world.desk_session]
    devices, locations = state(app, world.uid)[2], state(app, world.uid)[5]
    assert devices == [] and locations == []


def test_a_forgotten_device_no_longer_skips_the_code(app, world: World):
    world.desk.logout()
    # Remembered: the password alone signs in here.
    assert world.desk.login().headers["Location"] == "/"
    post(world.desk, f"{PAGE}/devices/{world.device_id}/forget")
    world.desk.logout()
    assert world.desk.login().headers["Location"] == "/mfa/challenge"


def test_forgetting_with_htmx_answers_the_section(world: World):
    answer = post(
        world.desk, f"{PAGE}/devices/{world.device_id}/forget", headers={"HX-Request": "true"}
    )
    assert answer.status_code == 200
    body = html(answer)
    assert "<html" not in body and body.lstrip().startswith('<h2 id="devices-heading"')
    assert "Browser on unknown system: forgotten." in body
    assert "No device is remembered" in body


# ---------------------------------------------------------------------------------------
# Password (ACC-2)


def test_change_password(app, world: World, mailbox):
    desk = world.desk
    page = html(desk.client.get(f"{PAGE}/password"))
    assert 'autocomplete="current-password"' in page and 'autocomplete="new-password"' in page
    wrong = desk.post(
        f"{PAGE}/password",
        {"current": "not my password", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert wrong.status_code == 422 and "That is not your current password." in html(wrong)
    short = desk.post(
        f"{PAGE}/password", {"current": PASSWORD, "password": "short", "confirm": "short"}
    )
    assert short.status_code == 422 and "Use at least 12 characters." in html(short)
    differ = desk.post(
        f"{PAGE}/password",
        {"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "!"},
    )
    assert differ.status_code == 422 and "The two passwords are not the same" in html(differ)
    assert audited(app, "password.changed") == []
    with desk.client.session_transaction() as cookie:
        before = cookie["sid"]
    done = desk.post(
        f"{PAGE}/password",
        {"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        headers={"HX-Request": "true"},
    )
    assert done.status_code == 204 and done.headers["HX-Redirect"] == PAGE
    with desk.client.session_transaction() as cookie:
        assert cookie["sid"] != before  # a new session id for the new password
    assert desk.client.get(PAGE).status_code == 200
    assert world.phone.client.get("/").headers["Location"].startswith("/sign-in")
    assert state(app, world.uid)[2] == []  # remembered devices forgotten
    assert [e.event for e in audited(app, "password.change_refused")] == ["password.change_refused"]
    text = mailbox.text(mailbox.to(NURSE)[-1])
    assert "on your account's security page" in text and "Every other device" in text
    laptop = browser(app)
    assert laptop.login(password=PASSWORD).status_code == 422  # the old one: refused
    assert laptop.login(password=NEW_PASSWORD).headers["Location"] == "/mfa/challenge"


def test_wrong_current_passwords_are_throttled_like_sign_in(app, world: World):
    data = {"current": "not my password", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    for _ in range(5):
        assert world.desk.post(f"{PAGE}/password", data).status_code == 422
    refused = world.desk.post(f"{PAGE}/password", data)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert "Too many failed attempts" in html(refused)


# ---------------------------------------------------------------------------------------
# Removing the last way while required (the rule every removal path obeys)


def test_the_only_way_cannot_be_removed_while_required(app, world: World, set_policy):
    set_policy(mode="required")
    post(world.desk, f"{PAGE}/factors/{world.email_id}/remove")
    before = state(app, world.uid)
    page = html(world.desk.client.get(PAGE))
    assert ONLY_WAY_REQUIRED in page and f"factors/{world.app_id}/remove" not in page
    refused = post(world.desk, f"{PAGE}/factors/{world.app_id}/remove", {"confirmed": "yes"})
    assert refused.status_code == 409 and ONLY_WAY_REQUIRED in html(refused)
    partial = post(
        world.desk,
        f"{PAGE}/factors/{world.app_id}/remove",
        {"confirmed": "yes"},
        headers={"HX-Request": "true"},
    )
    assert partial.status_code == 409 and "<html" not in html(partial)
    assert 'role="alert"' in html(partial) and ONLY_WAY_REQUIRED in html(partial)
    assert state(app, world.uid) == before


def test_an_sms_factor_is_listed_masked(app, world: World):
    add_factor(app, world.uid, "sms", MOBILE)
    page = html(world.desk.client.get(PAGE))
    assert "04******78" in page and MOBILE not in page
    assert "Change the mobile number" in page and "Change the email address" in page
    assert "Move to a new phone" in page
