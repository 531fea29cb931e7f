"""Managing staff from a person's admin page (ADM-7, AUTH-6, OPS-4): adding someone with an
emailed invitation, changing roles with the last-Administrator rules, deactivating (which
ends their sessions at once) and reactivating, resetting two-step sign-in, unlocking,
forgetting devices and signing out everywhere. Each action is confirmed first, audited and,
where it changes the person's access, emailed to them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from models import (
    MfaFactor,
    PasswordResetToken,
    RememberedDevice,
    Role,
    SignInThrottle,
    TrustedLocation,
    User,
    UserSession,
    db,
)
from services import throttle
from tests.admin_helpers import ACTION_SLUGS, events, text
from tests.conftest import ADMIN, PASSWORD, AuthActions, make_app, release_together

NURSE = "nurse@clinic.example"
NEW = "new.starter@clinic.example"
NEW_PASSWORD = "a long first passphrase"
T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


def user(app, user_id: int) -> User:
    with app.app_context():
        row = db.session.get(User, user_id)
        _ = row.role.name
        return row


def role_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Role.id).where(Role.name == name))


def act(admin: AuthActions, user_id: int, slug: str, data: dict | None = None, **kw):
    """Confirm an action the way the page does: the confirmation's form and CSRF token."""
    return admin.post(
        f"/admin/users/{user_id}/{slug}", data or {}, page=f"/admin/users/{user_id}/{slug}", **kw
    )


def error_on(response) -> str:
    found = re.search(
        r'<div class="alert alert-error" role="alert"[^>]*>([^<]*)</div>', text(response)
    )
    assert found, text(response)[:500]
    return found.group(1)


# --- adding a person and their invitation -----------------------------------------------


def add(admin: AuthActions, **values: str):
    data = {"email": NEW, "full_name": "Nia Starter", "role": "", "mobile_number": ""}
    data.update(values)
    return admin.post("/admin/users/new", data)


def invitation_in(mailbox, address: str = NEW) -> str:
    text_ = mailbox.text(mailbox.to(address)[-1])
    return urlsplit(re.search(r"https?://\S+/invitation/\S+", text_).group(0)).path


def accept(client_auth: AuthActions, path: str, password: str = NEW_PASSWORD):
    opened = client_auth.client.get(path)
    assert opened.status_code == 303 and opened.headers["Location"] == "/invitation"
    assert opened.headers["Referrer-Policy"] == "no-referrer"
    page = client_auth.client.get("/invitation")
    return page, client_auth.post("/invitation", {"password": password, "confirm": password})


def test_add_a_person_who_chooses_a_password_then_signs_in(app, client, admin, mailbox):
    reception = role_id(app, "Reception")
    response = add(admin, role=str(reception), mobile_number="0412 345 678")
    assert response.status_code == 303
    with app.app_context():
        person = db.session.scalar(sa.select(User).where(User.email == NEW))
        assert person.password_hash is None and person.role_id == reception
        assert person.mobile_number == "+61412345678"
    assert response.headers["Location"] == f"/admin/users/{person.id}"
    page = text(client.get(response.headers["Location"]))
    assert "Nia Starter was added and emailed an invitation." in page
    assert "No password chosen yet; the invitation works until" in page
    [mail] = mailbox.to(NEW)
    assert mail["Subject"] == "You are invited to sign in to Harbour Clinic"
    body = mailbox.text(mail)
    assert (
        "Bo Boss has given you an account on Harbour Clinic's sign-in, with the Reception role."
        in body
    )
    assert "The link works once, for 72 hours." in body
    assert "From:" not in body and "If this was not you" not in body
    [event] = events(app, "admin.user_invited")
    assert event.actor_id == admin.user_id and event.details == {"role": "Reception"}

    # Nobody signs in as them before they choose a password.
    stranger = AuthActions(app.test_client())
    refused = stranger.login(NEW, "")
    assert refused.status_code == 422
    # The new person opens the link in their own browser: it never signs them in.
    newcomer = AuthActions(app.test_client())
    page, chosen = accept(newcomer, invitation_in(mailbox))
    assert "Welcome to Harbour Clinic: choose your password" in text(page)
    assert chosen.status_code == 303 and chosen.headers["Location"] == "/sign-in"
    assert newcomer.client.get("/").status_code == 303  # not signed in
    assert "Your password is set. Sign in with your email address and new password." in text(
        newcomer.client.get("/sign-in")
    )
    assert len(events(app, "invitation.accepted")) == 1
    signed_in = newcomer.login(NEW, NEW_PASSWORD)
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/"
    assert "Welcome, Nia Starter" in text(newcomer.client.get("/"))


def test_an_invitation_works_once(app, admin, mailbox):
    add(admin, role=str(role_id(app, "Practitioner")))
    path = invitation_in(mailbox)
    accept(AuthActions(app.test_client()), path)
    again = AuthActions(app.test_client())
    opened = again.client.get(path)
    assert opened.status_code == 303
    dead = again.client.get("/invitation")
    assert dead.status_code == 410
    assert "This invitation has expired or was already used" in text(dead)
    refused = again.post(
        "/invitation", {"password": "x" * 20, "confirm": "x" * 20}, page="/sign-in"
    )
    assert refused.status_code == 410


def test_racing_requests_spend_an_invitation_once(app, admin, mailbox):
    """Both found the link usable; the conditional UPDATE lets one password through."""
    from services import emailed_links, invitations

    add(admin, role=str(role_id(app, "Practitioner")))
    token = invitation_in(mailbox).rsplit("/", 1)[1]
    with app.test_request_context():
        first = emailed_links.usable(token, emailed_links.INVITATION)
        second = emailed_links.usable(token, emailed_links.INVITATION)
        assert first is not None and second is not None
        assert invitations.accept(first, NEW_PASSWORD) is True
        assert invitations.accept(second, "the racer's long passphrase") is False
    assert AuthActions(app.test_client()).login(NEW, NEW_PASSWORD).status_code == 303
    assert len(events(app, "invitation.accepted")) == 1


def test_an_invitation_expires_after_72_hours(app, admin, mailbox):
    add(admin, role=str(role_id(app, "Practitioner")))
    path = invitation_in(mailbox)
    with app.app_context():
        row = db.session.scalar(sa.select(PasswordResetToken))
        assert (row.purpose, row.expires_at - row.created_at) == ("invitation", timedelta(hours=72))
    with time_machine.travel(row.expires_at - timedelta(seconds=1), tick=False):
        browser = AuthActions(app.test_client())
        browser.client.get(path)
        assert browser.client.get("/invitation").status_code == 200
    with time_machine.travel(row.expires_at, tick=False):
        late = AuthActions(app.test_client())
        late.client.get(path)
        page = late.client.get("/invitation")
        assert page.status_code == 410
        assert "An invitation link works once, for 72 hours" in text(page)


def test_resending_voids_the_old_link(app, client, admin, mailbox):
    add(admin, role=str(role_id(app, "Practitioner")))
    first = invitation_in(mailbox)
    with app.app_context():
        person_id = db.session.scalar(sa.select(User.id).where(User.email == NEW))
    confirm = client.get(f"/admin/users/{person_id}/resend-invitation")
    assert "Resend Nia Starter's invitation" in text(confirm)
    resent = act(admin, person_id, "resend-invitation")
    assert resent.status_code == 303
    assert f"A new invitation went to {NEW}; the earlier link no longer works." in text(
        client.get(f"/admin/users/{person_id}")
    )
    second = invitation_in(mailbox)
    assert first != second and len(mailbox.to(NEW)) == 2
    old = AuthActions(app.test_client())
    old.client.get(first)
    assert old.client.get("/invitation").status_code == 410
    _, chosen = accept(AuthActions(app.test_client()), second)
    assert chosen.status_code == 303
    assert len(events(app, "admin.invitation_resent")) == 1
    # Once they have a password there is nothing to resend.
    after = act(admin, person_id, "resend-invitation")
    assert after.status_code == 422
    assert error_on(after) == "Nia Starter has already chosen a password."


def test_an_invitation_link_does_not_reset_and_a_reset_link_does_not_invite(app, admin, mailbox):
    add(admin, role=str(role_id(app, "Practitioner")))
    token = invitation_in(mailbox).rsplit("/", 1)[1]
    browser = AuthActions(app.test_client())
    browser.client.get(f"/reset-password/{token}")
    assert browser.client.get("/reset-password").status_code == 410


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"email": "not an address"}, "email", "An email address must have an @-sign."),
        ({"email": ADMIN}, "email", f"A user with the email {ADMIN} already exists."),
        ({"full_name": ""}, "full_name", "Enter their name."),
        ({"mobile_number": "02 9876 5432"}, "mobile_number", "Enter a mobile number that can"),
        ({"role": "999"}, "role", "Not a valid choice."),
    ],
)
def test_adding_refuses_bad_details_at_their_field(app, admin, mailbox, values, field, message):
    response = add(admin, **{"role": str(role_id(app, "Practitioner")), **values})
    assert response.status_code == 422
    error = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', text(response))
    assert error is not None and error.group(1).startswith(message), text(response)[:300]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(User.id))) == 1
    assert mailbox.to(NEW) == []


def test_the_person_is_added_even_when_the_mail_server_is_down(app, client, admin, mailbox):
    app.config["MAIL_PORT"] = 1  # nothing listens there
    response = add(admin, role=str(role_id(app, "Practitioner")))
    assert response.status_code == 303
    page = text(client.get(response.headers["Location"]))
    assert (
        "Nia Starter was added, but the invitation email could not be sent. "
        "Check the mail server, then use Resend invitation."
    ) in page
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(PasswordResetToken.id))) == 0
    assert [e.details["template"] for e in events(app, "mail.failed")] == ["invitation"]


# --- roles and the last Administrator --------------------------------------------------


def test_change_a_role_ends_their_sessions_and_tells_them(app, client, admin, make_user, mailbox):
    nurse = make_user(NURSE, full_name="Pat Nurse")
    theirs = AuthActions(app.test_client())
    theirs.login(NURSE)
    assert theirs.client.get("/").status_code == 200
    confirm = client.get(f"/admin/users/{nurse}/role", headers={"HX-Request": "true"})
    assert confirm.status_code == 200 and "<html" not in text(confirm)
    assert '<h2 id="action-heading">Change Pat Nurse\'s role</h2>' in text(confirm)
    reception = role_id(app, "Reception")
    done = act(admin, nurse, "role", {"role": str(reception)}, headers={"HX-Request": "true"})
    assert done.status_code == 204 and done.headers["HX-Redirect"] == f"/admin/users/{nurse}"
    assert "Pat Nurse is now Reception; they were signed out everywhere." in text(
        client.get(f"/admin/users/{nurse}")
    )
    assert user(app, nurse).role.name == "Reception"
    assert theirs.client.get("/").status_code == 303
    [event] = events(app, "admin.role_changed")
    assert (event.actor_id, event.subject_id) == (admin.user_id, nurse)
    assert event.details == {"before": {"role": "Practitioner"}, "after": {"role": "Reception"}}
    [mail] = mailbox.to(NURSE)
    assert mail["Subject"] == "Your role was changed to Reception"
    assert (
        "Bo Boss changed your role on Harbour Clinic's sign-in from Practitioner to Reception."
        in (mailbox.text(mail))
    )


def test_a_role_change_without_a_role_is_refused(app, admin, make_user):
    nurse = make_user(NURSE, full_name="Pat Nurse")
    for data in ({}, {"role": ""}, {"role": "999"}, {"role": "Administrator"}):
        response = act(admin, nurse, "role", data)
        assert response.status_code == 422, data
        assert '<p class="error" id="role-error">Not a valid choice.</p>' in text(response)
    assert user(app, nurse).role.name == "Practitioner"
    assert events(app, "admin.role_changed") == []


def test_an_admin_cannot_remove_their_own_admin_role(app, admin, make_user):
    make_user("second.admin@clinic.example", role="Administrator")
    response = act(admin, admin.user_id, "role", {"role": str(role_id(app, "Practitioner"))})
    assert response.status_code == 422
    assert error_on(response) == (
        "You cannot remove your own Administrator role. Another administrator can."
    )
    assert user(app, admin.user_id).role.name == "Administrator"
    assert events(app, "admin.role_changed") == []


def test_the_last_active_administrator_is_never_demoted_or_switched_off(app, make_user):
    """The rule in the service: an actor who is not the subject (say an admin whose own
    account was switched off meanwhile) still cannot leave the clinic without an active
    Administrator."""
    from services import staff

    last = make_user(ADMIN, role="Administrator", full_name="Bo Boss")
    gone = make_user("old.admin@clinic.example", role="Administrator", active=False)
    with app.test_request_context():
        me, them = db.session.get(User, last), db.session.get(User, gone)
        practitioner = db.session.get(Role, role_id(app, "Practitioner"))
        for change in (
            lambda: staff.change_role(them, me, practitioner),
            lambda: staff.deactivate(them, me),
        ):
            with pytest.raises(staff.UserInputError) as refused:
                change()
            assert str(refused.value) == (
                "Bo Boss is the last active Administrator. Make someone else an Administrator "
                "first."
            )
    assert user(app, last).role.name == "Administrator" and user(app, last).active


def test_two_admins_demoting_each_other_at_once_leave_one(database_url, app, make_user, enrol_totp):
    """Each signed in on their own app instance (two workers), each demotes the other at the
    same moment: one change wins, the other is refused, one Administrator is left."""
    other_app = make_app(database_url)
    admins = []
    for email, name, on in [
        (ADMIN, "Bo Boss", app),
        ("sam@clinic.example", "Sam Second", other_app),
    ]:
        admin_id = make_user(email, role="Administrator", full_name=name)
        secret, _ = enrol_totp(admin_id)
        browser = AuthActions(on.test_client())
        browser.login(email)
        assert browser.verify_totp(pyotp.TOTP(secret).now()).status_code == 303
        admins.append((admin_id, browser))
    practitioner = str(role_id(app, "Practitioner"))
    posts = []
    for (_, browser), (target, _) in [(admins[0], admins[1]), (admins[1], admins[0])]:
        token = browser.csrf_token(f"/admin/users/{target}/role")
        posts.append(
            lambda browser=browser, target=target, token=token: browser.client.post(
                f"/admin/users/{target}/role", data={"csrf_token": token, "role": practitioner}
            )
        )
    statuses = release_together(posts)
    assert sorted(statuses) in ([303, 404], [303, 422]), statuses
    with app.app_context():
        left = db.session.scalars(
            sa.select(User.email).join(Role).where(Role.name == "Administrator")
        ).all()
    assert len(left) == 1, left
    assert len(events(app, "admin.role_changed")) == 1
    with other_app.app_context():
        db.engine.dispose()


# --- deactivate, reactivate ------------------------------------------------------------


def test_deactivate_ends_their_sessions_at_once(app, client, admin, make_user, mailbox):
    nurse = make_user(NURSE, full_name="Pat Nurse")
    theirs = AuthActions(app.test_client())
    theirs.login(NURSE)
    assert theirs.client.get("/").status_code == 200
    confirm = client.get(f"/admin/users/{nurse}/deactivate")
    assert "<title>Pat Nurse: Deactivate · Harbour Clinic</title>" in text(confirm)
    assert '<h1 id="action-heading">Deactivate Pat Nurse</h1>' in text(confirm)
    assert user(app, nurse).active  # nothing happens until confirmed
    done = act(admin, nurse, "deactivate")
    assert done.status_code == 303
    bounced = theirs.client.get("/")
    assert bounced.status_code == 303 and urlsplit(bounced.headers["Location"]).path == "/sign-in"
    with app.app_context():
        states = db.session.execute(
            sa.select(UserSession.state, UserSession.end_reason).where(UserSession.user_id == nurse)
        ).all()
        assert [tuple(s) for s in states] == [("ended", "deactivated")]
    assert AuthActions(app.test_client()).login(NURSE).status_code == 422
    assert [m["Subject"] for m in mailbox.to(NURSE)] == ["Your account was switched off"]
    [event] = events(app, "admin.user_deactivated")
    assert (event.actor_id, event.subject_id) == (admin.user_id, nurse)
    assert event.details == {"before": {"active": True}, "after": {"active": False}}
    page = text(client.get(f"/admin/users/{nurse}"))
    assert "Pat Nurse's account is switched off; they were signed out everywhere." in page
    assert f'href="/admin/users/{nurse}/reactivate"' in page
    assert f'href="/admin/users/{nurse}/deactivate"' not in page

    back = act(admin, nurse, "reactivate")
    assert back.status_code == 303 and user(app, nurse).active
    assert AuthActions(app.test_client()).login(NURSE).status_code == 303
    assert mailbox.to(NURSE)[-1]["Subject"] == "Your account was switched on again"


def test_an_admin_cannot_deactivate_themselves(app, client, admin):
    page = text(client.get(f"/admin/users/{admin.user_id}"))
    assert f'href="/admin/users/{admin.user_id}/deactivate"' not in page
    assert "You cannot deactivate your own account or remove your own Administrator role" in page
    response = act(admin, admin.user_id, "deactivate")
    assert response.status_code == 422
    assert (
        error_on(response) == "You cannot deactivate your own account. Another administrator can."
    )
    assert user(app, admin.user_id).active


# --- reset, unlock, devices, sign out everywhere ------------------------------------------


def test_reset_mfa(app, client, admin, make_user, enrol_totp, mailbox):
    nurse = make_user(NURSE, full_name="Pat Nurse")
    enrol_totp(nurse, with_recovery=True)
    done = act(admin, nurse, "reset-mfa")
    assert done.status_code == 303
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(MfaFactor.id))) == 1  # the admin's
    [event] = events(app, "mfa.reset")
    assert (event.actor_id, event.subject_id, event.details) == (
        admin.user_id,
        nurse,
        {"via": "admin"},
    )
    assert mailbox.to(NURSE)[-1]["Subject"] == "Two-step sign-in was removed from your account"


def test_unlock_a_password_and_a_code(app, client, admin, make_user, mailbox):
    nurse = make_user(NURSE, full_name="Pat Nurse")
    now = datetime.now(UTC)
    with app.app_context():
        db.session.add(
            SignInThrottle(key=throttle.email_key(NURSE), failures=100, last_failure_at=now)
        )
        person = db.session.get(User, nurse)
        person.mfa_failed_attempts, person.mfa_lockouts = 20, 2
        person.mfa_locked_until = now + timedelta(minutes=30)
        db.session.commit()
    assert AuthActions(app.test_client()).login(NURSE).status_code == 429
    page = text(client.get(f"/admin/users/{nurse}"))
    assert "Too many wrong passwords: refused until an administrator unlocks it." in page
    assert "Too many wrong codes: refused until" in page
    done = act(admin, nurse, "unlock")
    assert done.status_code == 303
    assert "Unlocked Pat Nurse's password and sign-in code." in text(
        client.get(f"/admin/users/{nurse}")
    )
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SignInThrottle)) == 0
        person = db.session.get(User, nurse)
        assert (person.mfa_failed_attempts, person.mfa_locked_until) == (0, None)
    [event] = events(app, "user.unlocked")
    assert event.details == {"via": "admin", "password": True, "second_factor": True}
    [mail] = mailbox.to(NURSE)
    assert mail["Subject"] == "Your sign-in was unlocked"
    assert (
        "lifted the lock that too many wrong attempts had put on your password and sign-in code"
        in (" ".join(mailbox.text(mail).split()))
    )
    assert AuthActions(app.test_client()).login(NURSE).status_code == 303
    nothing = act(admin, nurse, "unlock")
    assert nothing.status_code == 303
    assert "Nothing was locked for Pat Nurse." in text(client.get(f"/admin/users/{nurse}"))
    assert len(mailbox.to(NURSE)) == 1


def test_forget_devices_and_sign_out_everywhere(app, client, admin, make_user, mailbox):
    nurse = make_user(NURSE, full_name="Pat Nurse")
    theirs = AuthActions(app.test_client())
    theirs.login(NURSE)
    later = datetime.now(UTC) + timedelta(days=30)
    with app.app_context():
        db.session.add(
            RememberedDevice(user_id=nurse, token_hash=b"\x01" * 32, label="x", expires_at=later)
        )
        db.session.add(TrustedLocation(user_id=nurse, ip="192.0.2.1", expires_at=later))
        db.session.commit()
    page = text(client.get(f"/admin/users/{nurse}"))
    assert "1 remembered device, 1 trusted address" in page
    assert act(admin, nurse, "forget-devices").status_code == 303
    assert "Forgot 1 remembered device; they were signed out everywhere." in text(
        client.get(f"/admin/users/{nurse}")
    )
    # A lost device may still be signed in: forgetting devices ends the sessions too.
    assert theirs.client.get("/").status_code == 303
    [forgot] = events(app, "admin.devices_forgotten")
    assert forgot.details == {"devices": 1, "sessions": 1}
    again = AuthActions(app.test_client())
    assert again.login(NURSE).status_code == 303 and again.client.get("/").status_code == 200
    assert act(admin, nurse, "sign-out-everywhere").status_code == 303
    assert again.client.get("/").status_code == 303
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(RememberedDevice.id))) == 0
        assert db.session.scalar(sa.select(sa.func.count(TrustedLocation.id))) == 0
    assert [m["Subject"] for m in mailbox.to(NURSE)] == [
        "Your remembered devices were forgotten",
        "You were signed out everywhere",
    ]
    assert events(app, "admin.signed_out_everywhere")[0].details == {"sessions": 1}


def test_each_action_asks_first_and_unknown_people_are_404(app, client, admin, make_user):
    nurse = make_user(NURSE, full_name="Pat Nurse")
    for slug in ACTION_SLUGS:
        page = client.get(f"/admin/users/{nurse}/{slug}")
        assert page.status_code == 200, slug
        assert f'action="/admin/users/{nurse}/{slug}"' in text(page)
        partial = client.get(f"/admin/users/{nurse}/{slug}", headers={"HX-Request": "true"})
        assert text(partial).lstrip().startswith('<section class="card confirm"'), slug
        assert client.get(f"/admin/users/999/{slug}").status_code == 404
        assert admin.post(f"/admin/users/999/{slug}", page="/admin/users").status_code == 404
    assert events(app, "admin.user_deactivated") == []


def test_the_person_page_keeps_its_rules_form(app, client, admin, make_user):
    nurse = make_user(NURSE, full_name="Pat Nurse")
    page = text(client.get(f"/admin/users/{nurse}"))
    assert '<form id="user-rules-form"' in page
    assert '<a href="/admin/users" aria-current="page">Users</a>' in page
    for label in ["Change role", "Let them sign in once without a code", "Deactivate"]:
        assert f">{label}</a>" in page
    assert ">Unlock</a>" not in page  # nothing locked
    assert ">Resend invitation</a>" not in page  # has a password


def test_cli_unlock_uses_the_same_rule(app, runner, make_user):
    nurse = make_user(NURSE)
    with app.app_context():
        db.session.add(
            SignInThrottle(
                key=throttle.email_key(NURSE), failures=100, last_failure_at=datetime.now(UTC)
            )
        )
        db.session.commit()
    result = runner.invoke(args=["users", "unlock", "Nurse@Clinic.example"])
    assert result.exit_code == 0 and result.output == f"Unlocked {NURSE}.\n"
    [event] = events(app, "user.unlocked")
    assert (event.subject_id, event.details) == (
        nurse,
        {"via": "cli", "password": True, "second_factor": False},
    )
    assert PASSWORD  # the nurse signs in again with it


def test_the_add_form_starts_on_a_role_that_is_not_administrator(app, client, admin):
    page = text(client.get("/admin/users/new"))
    practitioner = role_id(app, "Practitioner")
    assert f'<option selected value="{practitioner}">Practitioner</option>' in page
    assert "They get an email with a link to choose their password" in page
    refused = admin.post("/admin/users/new", {"email": NEW, "full_name": "Nia Starter"})
    assert refused.status_code == 422  # no role sent: nothing is assumed
    with app.app_context():
        assert db.session.scalar(sa.select(User).where(User.email == NEW)) is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /invitation/abc_DEF-123 HTTP/1.1", "GET /invitation/[redacted] HTTP/1.1"),
        ("GET /invit%61tion/abc HTTP/1.1", "GET /invit%61tion/[redacted] HTTP/1.1"),
        ("GET /invitation HTTP/1.1", "GET /invitation HTTP/1.1"),
    ],
)
def test_invitation_tokens_stay_out_of_logs(line, expected):
    from services.links import redact_tokens

    assert redact_tokens(line) == expected


def test_the_invitation_page_sends_no_referrer_and_no_token_in_its_url(app, admin, mailbox):
    add(admin, role=str(role_id(app, "Practitioner")))
    browser = AuthActions(app.test_client())
    opened = browser.client.get(invitation_in(mailbox))
    assert opened.headers["Location"] == "/invitation"
    page = browser.client.get("/invitation")
    assert page.status_code == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    assert 'hx-history="false"' in text(page)
