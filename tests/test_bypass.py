"""The one-time bypass (ADM-6, seed 002 "log in once without 2FA"): an admin lets someone who
lost their phone sign in once without a second factor, straight into the setup wizard.

What is checked: granting clears every stand-in for the factor and ends the sessions, emails
the person who did it and until when, and leaves their override alone; the next password
sign-in uses it, lands in the wizard with nothing else reachable and no way to skip; it is
spent by that sign-in (the one after follows the policy) even when 20 sign-ins race for it on
two app instances; it expires; and the CLI grants it too.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from models import (
    MfaFactor,
    MfaSetup,
    RecoveryCode,
    RememberedDevice,
    TrustedLocation,
    User,
    UserSession,
    db,
)
from models.sessions import ACTIVE, ENDED, PENDING, STEP_SETUP
from services import localtime, policy, staff, user_list
from tests.admin_helpers import events, text
from tests.conftest import ADMIN, PASSWORD, AuthActions, make_app, release_together

NURSE = "nurse@clinic.example"


@pytest.fixture
def nurse(app, make_user, enrol_totp) -> int:
    """Pat, who lost the phone with their authenticator app; exempt by their own rule."""
    user_id = make_user(NURSE, full_name="Pat Nurse", mfa_override="exempt")
    enrol_totp(user_id, with_recovery=True)
    later = datetime.now(UTC) + timedelta(days=30)
    with app.app_context():
        db.session.add(MfaSetup(user_id=user_id, kind="totp", stage="scan"))
        db.session.add(
            RememberedDevice(user_id=user_id, token_hash=b"\x02" * 32, label="x", expires_at=later)
        )
        db.session.add(TrustedLocation(user_id=user_id, ip="192.0.2.7", expires_at=later))
        db.session.commit()
    return user_id


def grant(admin: AuthActions, user_id: int, hours: str = "8", **kw):
    return admin.post(
        f"/admin/users/{user_id}/bypass",
        {"hours": hours},
        page=f"/admin/users/{user_id}/bypass",
        **kw,
    )


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_granting_clears_the_old_factor_ends_sessions_and_emails_them(
    app, client, admin, nurse, mailbox, set_policy
):
    set_policy(mode="required")
    theirs = AuthActions(app.test_client())
    with app.app_context():
        # Pat is signed in somewhere (a session row as their old phone's sign-in left it).
        db.session.add(
            UserSession(
                user_id=nurse,
                token_hash=b"\x03" * 32,
                state=ACTIVE,
                signed_in_at=datetime.now(UTC),
            )
        )
        db.session.commit()
    confirm = client.get(f"/admin/users/{nurse}/bypass", headers={"HX-Request": "true"})
    body = text(confirm)
    assert '<h2 id="action-heading">Let Pat Nurse sign in once without a code</h2>' in body
    assert 'name="hours"' in body and 'value="8"' in body
    assert "Their rule (exempt) stays as it is." in body
    assert count(app, MfaFactor, MfaFactor.user_id == nurse) == 1  # nothing yet

    done = grant(admin, nurse, "8", headers={"HX-Request": "true"})
    assert done.status_code == 204 and done.headers["HX-Redirect"] == f"/admin/users/{nurse}"
    for model in (MfaFactor, RecoveryCode, MfaSetup, RememberedDevice, TrustedLocation):
        assert count(app, model, model.user_id == nurse) == 0, model.__name__
    assert count(app, UserSession, UserSession.user_id == nurse, UserSession.state != ENDED) == 0
    with app.app_context():
        person = db.session.get(User, nurse)
        until = person.mfa_bypass_until
        assert person.mfa_override == "exempt"  # seed 002: the dropdown is not touched
        admin_id = db.session.scalar(sa.select(User.id).where(User.email == ADMIN))
        assert person.mfa_bypass_by_id == admin_id
        shown = localtime.when(until)
    assert (
        timedelta(hours=8) - timedelta(seconds=5) < until - datetime.now(UTC) <= timedelta(hours=8)
    )
    [event] = events(app, "admin.bypass_granted")
    assert (event.actor_id, event.subject_id) == (admin_id, nurse)
    assert event.details == {"hours": 8, "until": until.isoformat()}
    [mail] = mailbox.to(NURSE)
    assert mail["Subject"] == "You may sign in once without your code"
    words = " ".join(mailbox.text(mail).split())
    assert f"Bo Boss let you sign in once without your sign-in code, until {shown}" in words
    assert f"Sign in with your email address and password before {shown}" in words
    page = text(client.get(f"/admin/users/{nurse}"))
    assert f"May sign in once without a code until {shown}, granted by Bo Boss." in page
    assert f"Pat Nurse may sign in once without a code until {shown}" in page
    listed = text(client.get("/admin/users?status=bypass"))
    assert f'href="/admin/users/{nurse}">Pat Nurse</a>' in listed
    assert "Bypass pending" in listed
    assert theirs.client.get("/").status_code == 303


def test_the_next_sign_in_goes_into_the_wizard_and_nothing_else_opens(
    app, admin, nurse, mailbox, set_policy
):
    set_policy(mode="off")  # the policy would let Pat in without a factor: the grant does not
    grant(admin, nurse)
    pat = AuthActions(app.test_client())
    signed = pat.login(NURSE)
    assert signed.status_code == 303 and signed.headers["Location"] == "/mfa/setup"
    with app.app_context():
        row = db.session.scalar(
            sa.select(UserSession).where(UserSession.user_id == nurse, UserSession.state == PENDING)
        )
        assert (row.pending_step, row.setup_skippable, row.mfa_method) == (
            STEP_SETUP,
            False,
            "bypass",
        )
        assert db.session.get(User, nurse).mfa_bypass_until is None  # spent
    [ok] = events(app, "sign_in.password_ok")[-1:]
    assert ok.details == {"next": "setup", "reason": "one_time_bypass"}
    assert len(events(app, "mfa.bypass_used")) == 1
    wizard = text(pat.client.get("/mfa/setup"))
    assert "let you sign in once without a code, so that you can set up two-step sign-in" in wizard
    assert "Don't use multi-factor authentication" not in wizard and "Skip for now" not in wizard
    assert "Cancel and sign out" in wizard
    for path in ["/", "/mfa/challenge", "/reauthenticate", "/nothing-here"]:
        response = pat.client.get(path)
        assert response.status_code == 303 and response.headers["Location"] == "/mfa/setup", path
    assert pat.client.get("/admin/users").status_code == 404  # /admin is hidden as ever
    declined = pat.post("/mfa/setup/decline", page="/mfa/setup")
    assert declined.status_code == 403
    # Setting up an authenticator app finishes the sign-in.
    started = pat.post("/mfa/setup", {"method": "totp"})
    assert started.status_code == 303
    with app.app_context():
        from services import crypto

        secret = crypto.decrypt(db.session.get(MfaSetup, nurse).secret_encrypted)
    proved = pat.post("/mfa/setup/app/code", {"code": pyotp.TOTP(secret).now()})
    assert proved.status_code == 303
    assert pat.client.get("/").status_code in (200, 303)
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.count(UserSession.id)).where(
                    UserSession.user_id == nurse, UserSession.state == ACTIVE
                )
            )
            == 1
        )
        assert db.session.get(User, nurse).mfa_override == "exempt"


def follow_the_clinic(app, user_id: int) -> None:
    with app.app_context():
        db.session.get(User, user_id).mfa_override = "default"
        db.session.commit()


def test_it_works_once_the_next_sign_in_follows_the_policy(app, admin, nurse, set_policy):
    set_policy(mode="optional")
    follow_the_clinic(app, nurse)
    grant(admin, nurse)
    first = AuthActions(app.test_client())
    assert first.login(NURSE).headers["Location"] == "/mfa/setup"
    assert "Don't use multi-factor authentication" not in text(first.client.get("/mfa/setup"))
    first.logout()
    # Pat signed out without setting it up: the grant is gone, Optional applies.
    second = AuthActions(app.test_client())
    assert second.login(NURSE).headers["Location"] == "/mfa/setup"
    assert "Don't use multi-factor authentication" in text(second.client.get("/mfa/setup"))
    reasons = [e.details["reason"] for e in events(app, "sign_in.password_ok")][-2:]
    assert reasons == ["one_time_bypass", "optional_by_clinic"]
    set_policy(mode="off")
    third = AuthActions(app.test_client())
    assert third.login(NURSE).headers["Location"] == "/"


def test_it_expires(app, admin, nurse, set_policy):
    set_policy(mode="off")
    grant(admin, nurse, "2")
    with app.app_context():
        until = db.session.get(User, nurse).mfa_bypass_until
    with time_machine.travel(until - timedelta(seconds=1), tick=False):
        early = AuthActions(app.test_client())
        assert early.login(NURSE).headers["Location"] == "/mfa/setup"
    # Granted again; this time Pat comes too late.
    grant(admin, nurse, "2")
    with app.app_context():
        until = db.session.get(User, nurse).mfa_bypass_until
    with time_machine.travel(until, tick=False):
        # No longer shown as pending: not on the person's page nor in the list's filter.
        with app.test_request_context():
            person = db.session.get(User, nurse)
            assert staff.access_of(person).bypass_until is None
            shown = user_list.find(
                user_list.Query(status="bypass"), policy.current(), datetime.now(UTC)
            )
            assert shown.total == 0
            db.session.rollback()
        late = AuthActions(app.test_client())
        assert late.login(NURSE).headers["Location"] == "/"
        assert [e.details["reason"] for e in events(app, "sign_in.password_ok")][-1] == (
            "off_by_override"
        )
    assert len(events(app, "mfa.bypass_used")) == 1


def test_twenty_sign_ins_at_once_use_it_once(database_url, app, admin, nurse, set_policy):
    """Two app instances (two workers with their own pools) on one database; the others get
    what anyone without a factor gets under Optional: setup they may decline."""
    set_policy(mode="optional")
    follow_the_clinic(app, nurse)
    other = make_app(database_url)
    grant(admin, nurse)
    posts = []
    for i in range(20):
        browser = AuthActions((app if i % 2 else other).test_client())
        token = browser.csrf_token("/sign-in")
        posts.append(
            lambda b=browser, t=token: b.client.post(
                "/sign-in", data={"csrf_token": t, "email": NURSE, "password": PASSWORD}
            )
        )
    statuses = release_together(posts)
    assert statuses == [303] * 20
    assert len(events(app, "mfa.bypass_used")) == 1
    reasons = sorted(
        e.details["reason"] for e in events(app, "sign_in.password_ok") if e.subject_id == nurse
    )
    assert reasons == ["one_time_bypass"] + ["optional_by_clinic"] * 19
    with app.app_context():
        rows = db.session.execute(
            sa.select(UserSession.setup_skippable, UserSession.mfa_method).where(
                UserSession.user_id == nurse, UserSession.state == PENDING
            )
        ).all()
        assert sorted(map(tuple, rows), key=str) == sorted(
            [(False, "bypass")] + [(True, None)] * 19, key=str
        )
        assert db.session.get(User, nurse).mfa_bypass_until is None
    with other.app_context():
        db.engine.dispose()


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ("0", "Choose from 1 to 24 hours."),
        ("25", "Choose from 1 to 24 hours."),
        ("", "Enter a number of hours from 1 to 24."),
        ("eight", "Not a valid integer value."),
    ],
)
def test_hours_out_of_range_are_refused(app, admin, nurse, hours, message):
    response = grant(admin, nurse, hours)
    assert response.status_code == 422
    error = re.search(r'<p class="error" id="hours-error">([^<]*)</p>', text(response))
    assert error is not None and error.group(1).startswith(message)
    assert count(app, MfaFactor, MfaFactor.user_id == nurse) == 1
    assert events(app, "admin.bypass_granted") == []


def test_no_bypass_for_a_switched_off_or_invited_account(app, admin, make_user):
    gone = make_user("gone@clinic.example", full_name="Gone Away", active=False)
    invited = make_user("new@clinic.example", full_name="New Person")
    with app.app_context():
        db.session.get(User, invited).password_hash = None
        db.session.commit()
    for user_id, message in [
        (gone, "Gone Away's account is switched off: reactivate it first."),
        (invited, "New Person has not chosen a password yet: resend the invitation instead."),
    ]:
        response = grant(admin, user_id)
        assert response.status_code == 422
        assert f'<div class="alert alert-error" role="alert" tabindex="-1">{message}</div>' in (
            text(response)
        )
    assert events(app, "admin.bypass_granted") == []


def test_cli_grants_it_too(app, runner, nurse, mailbox, set_policy):
    set_policy(mode="off")
    result = runner.invoke(args=["users", "bypass", NURSE, "--hours", "3"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        person = db.session.get(User, nurse)
        shown = localtime.when(person.mfa_bypass_until)
        assert person.mfa_override == "exempt"
    assert result.output == (
        f"{NURSE} may sign in once without a code until {shown}, straight into setting it up "
        "again. They were emailed.\n"
    )
    assert count(app, MfaFactor, MfaFactor.user_id == nurse) == 0
    [event] = events(app, "admin.bypass_granted")
    assert event.actor_id is None and event.details["via"] == "cli"
    assert "Your clinic's administrator let you sign in once" in mailbox.text(mailbox.to(NURSE)[-1])
    assert AuthActions(app.test_client()).login(NURSE).headers["Location"] == "/mfa/setup"
    refused = runner.invoke(args=["users", "bypass", NURSE, "--hours", "30"])
    assert refused.exit_code == 1 and "Choose from 1 to 24 hours." in refused.output
    unknown = runner.invoke(args=["users", "bypass", "nobody@clinic.example"])
    assert unknown.exit_code == 1 and "No user with the email nobody@clinic.example." in (
        unknown.output
    )


def test_a_factor_set_up_meanwhile_is_asked_for_and_the_grant_kept(app, nurse, enrol_totp):
    """The grant stands in for a missing factor only: someone who has one is asked for it
    (the order in signin.decide), and the grant is not spent by that sign-in."""
    from services import signin

    with app.test_request_context("/sign-in", method="POST"):
        person = db.session.get(User, nurse)
        person.mfa_bypass_until = datetime.now(UTC) + timedelta(hours=1)
        db.session.commit()
        decision = signin.decide_and_claim(person, policy.current())
        assert (decision.next, decision.bypass) == (signin.Next.CHALLENGE, False)
        db.session.commit()
        assert db.session.get(User, nurse).mfa_bypass_until is not None
