"""Your ways of getting a code, changed from the security page (ACC-2, FAC-1..5, DEV-2):
removing one (and the last one), the default, a new phone, a new number or address, adding
one through the wizard, new recovery codes."""

from __future__ import annotations

import contextlib
import re
import threading
from datetime import date, timedelta

import pyotp
import pytest
import sqlalchemy as sa

from blueprints.mfa.wizard.contact_steps import CODE_VOID
from models import MfaFactor, RecoveryCode, Role, User, db
from services import account, factor_kinds
from services.account import NOT_ALLOWED, ONLY_WAY_REQUIRED
from tests.account.conftest import (
    KEY_RE,
    MOBILE,
    NURSE,
    PAGE,
    World,
    add_factor,
    audited,
    browser,
    html,
    last_code,
    last_sms,
    post,
    state,
    subjects,
)
from tests.conftest import make_app

NEW_MOBILE = "+61498765432"


def factors_of(app, user_id: int) -> list[tuple[str, bool, str | None]]:
    with app.app_context():
        return [
            (f.kind, f.is_default, f.target)
            for f in db.session.scalars(
                sa.select(MfaFactor).where(MfaFactor.user_id == user_id).order_by(MfaFactor.id)
            )
        ]


def only_the_app(world: World) -> None:
    with world.app.app_context():
        db.session.execute(sa.delete(MfaFactor).where(MfaFactor.id == world.email_id))
        db.session.commit()


# ---------------------------------------------------------------------------------------
# Removing


def test_removing_the_default_moves_it_and_forgets_devices(app, world: World, mailbox):
    answer = post(world.desk, f"{PAGE}/factors/{world.app_id}/remove")
    assert answer.headers["Location"] == PAGE
    assert factors_of(app, world.uid) == [("email", True, NURSE)]
    devices, recovery_codes = state(app, world.uid)[2], state(app, world.uid)[1]
    assert devices == [] and len(recovery_codes) == 10
    assert subjects(mailbox) == ["Authenticator app was removed from your two-step sign-in"]
    assert "From now on you are asked for a code from: Email." in mailbox.text(mailbox.messages[0])
    # The next sign-in asks for the new default: an emailed code.
    laptop = browser(app)
    assert laptop.login().headers["Location"] == "/mfa/challenge"
    assert "We sent a code to n****@clinic.example" in html(laptop.client.get("/mfa/challenge"))


@pytest.mark.parametrize(
    ("mode", "next_sign_in"), [("optional", "/mfa/setup"), ("off", "/")], ids=["optional", "off"]
)
def test_the_last_way_goes_after_a_confirmation_where_allowed(
    app, world: World, set_policy, mailbox, mode, next_sign_in
):
    set_policy(mode=mode)
    only_the_app(world)
    before = state(app, world.uid)
    asked = post(world.desk, f"{PAGE}/factors/{world.app_id}/remove")
    assert asked.status_code == 200
    page = html(asked)
    assert "Turn off two-step sign-in?" in page and "your recovery codes stop working" in page
    assert 'name="confirmed" value="yes"' in page
    partial = post(
        world.desk, f"{PAGE}/factors/{world.app_id}/remove", headers={"HX-Request": "true"}
    )
    assert "<html" not in html(partial) and "Turn off two-step sign-in?" in html(partial)
    assert state(app, world.uid) == before and mailbox.messages == []

    done = post(world.desk, f"{PAGE}/factors/{world.app_id}/remove", {"confirmed": "yes"})
    assert done.headers["Location"] == PAGE
    after = state(app, world.uid)
    assert after[0] == [] and after[1] == [] and after[2] == []  # factors, codes, devices
    page = html(world.desk.client.get(PAGE))
    assert "Authenticator app: removed. Two-step sign-in is now off." in page
    assert "<strong>Off.</strong>" in page and "Set up two-step sign-in" in page
    assert "two-step sign-in is now off for you" in mailbox.text(mailbox.messages[0])
    # This session carries on; the next sign-in follows the policy.
    assert world.desk.client.get("/").status_code == 200
    laptop = browser(app)
    assert laptop.login().headers["Location"] == next_sign_in
    if mode == "optional":
        assert "Don't use multi-factor authentication" in html(laptop.client.get(next_sign_in))


@pytest.mark.parametrize("how", ["clinic", "role_from_a_later_date", "override"])
def test_the_last_way_stays_while_required_for_you(app, world: World, set_policy, how):
    only_the_app(world)
    with app.app_context():
        if how == "clinic":
            db.session.execute(sa.text("UPDATE clinic_policy SET mode = 'required'"))
        elif how == "override":
            db.session.get(User, world.uid).mfa_override = "required"
        else:
            role = db.session.scalar(sa.select(Role).where(Role.name == "Practitioner"))
            role.mfa_mode, role.mfa_required_from = "required", date(2027, 2, 1)
        db.session.commit()
    before = state(app, world.uid)
    refused = post(world.desk, f"{PAGE}/factors/{world.app_id}/remove", {"confirmed": "yes"})
    assert refused.status_code == 409 and ONLY_WAY_REQUIRED in html(refused)
    assert state(app, world.uid) == before
    assert audited(app, "mfa.factor_removed") == []


def test_exempt_may_turn_it_off(app, world: World):
    only_the_app(world)
    with app.app_context():
        db.session.execute(sa.text("UPDATE clinic_policy SET mode = 'required'"))
        db.session.get(User, world.uid).mfa_override = "exempt"
        db.session.commit()
    assert post(world.desk, f"{PAGE}/factors/{world.app_id}/remove").status_code == 200
    done = post(world.desk, f"{PAGE}/factors/{world.app_id}/remove", {"confirmed": "yes"})
    assert done.status_code == 303 and factors_of(app, world.uid) == []


def test_a_way_the_clinic_no_longer_allows_may_always_go(app, world: World, set_policy):
    set_policy(mode="required", methods="totp")
    page = html(world.desk.client.get(PAGE))
    assert "Not allowed by your clinic now" in page
    refused = post(world.desk, f"{PAGE}/factors/{world.app_id}/remove", {"confirmed": "yes"})
    assert refused.status_code == 409  # the app is the only usable way
    # The email factor protects nothing now: it goes without a confirmation.
    gone = post(world.desk, f"{PAGE}/factors/{world.email_id}/remove")
    assert gone.headers["Location"] == PAGE
    assert factors_of(app, world.uid) == [("totp", True, None)]
    default = post(world.desk, f"{PAGE}/factors/{world.app_id}/default")
    assert default.status_code == 303


def test_two_removals_racing_leave_one_way(
    database_url, app, world: World, set_policy, monkeypatch
):
    """Each removal alone is allowed; both at once would leave nothing while required. Each
    request waits (at most 2 s) after its check until the other has checked too, so without
    the row lock (PostgreSQL) and the conditional DELETE (SQLite) both would delete."""
    set_policy(mode="required")
    checked = threading.Barrier(2)
    inside = threading.local()
    real_remove, real_rule = account.remove_factor, account.removal_of

    def remove_factor(*args, **kwargs):
        inside.removing = True
        try:
            return real_remove(*args, **kwargs)
        finally:
            inside.removing = False

    def removal_of(*args, **kwargs):
        decided = real_rule(*args, **kwargs)
        if getattr(inside, "removing", False):
            with contextlib.suppress(threading.BrokenBarrierError):
                checked.wait(timeout=2)
        return decided

    monkeypatch.setattr(account, "remove_factor", remove_factor)
    monkeypatch.setattr(account, "removal_of", removal_of)
    other = make_app(database_url)
    name = app.config["SESSION_COOKIE_NAME"]
    token = world.desk.csrf_token(PAGE)
    cookie = world.desk.client.get_cookie(name).value
    started = threading.Barrier(2)
    statuses: list[int] = []

    def remove(instance, factor_id: int) -> None:
        client = instance.test_client()
        client.set_cookie(name, cookie)
        started.wait(timeout=20)
        path = f"{PAGE}/factors/{factor_id}/remove"
        statuses.append(client.post(path, data={"csrf_token": token}).status_code)

    threads = [
        threading.Thread(target=remove, args=(app, world.app_id)),
        threading.Thread(target=remove, args=(other, world.email_id)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [303, 409]
    assert len(factors_of(app, world.uid)) == 1
    assert [kind for kind, default, _ in factors_of(app, world.uid) if default]
    with other.app_context():
        db.engine.dispose()


# ---------------------------------------------------------------------------------------
# The default


def test_the_default_is_asked_for_first(app, world: World, mailbox):
    answer = post(
        world.desk, f"{PAGE}/factors/{world.email_id}/default", headers={"HX-Request": "true"}
    )
    assert answer.status_code == 200 and "Email: asked for first when you sign in." in html(answer)
    assert factors_of(app, world.uid) == [("totp", False, None), ("email", True, NURSE)]
    laptop = browser(app)
    laptop.login()
    assert "we emailed" in html(laptop.client.get("/mfa/challenge"))
    assert laptop.verify_totp(last_code(mailbox)).headers["Location"] == "/"
    with app.app_context():
        assert db.session.get(MfaFactor, world.email_id).last_used_at is not None


def test_a_forbidden_kind_cannot_be_the_default(app, world: World, set_policy):
    set_policy(methods="totp")
    refused = post(world.desk, f"{PAGE}/factors/{world.email_id}/default")
    assert refused.status_code == 409
    assert NOT_ALLOWED.format(label="Email") in html(refused)
    assert factors_of(app, world.uid)[0] == ("totp", True, None)
    assert post(world.desk, f"{PAGE}/factors/{world.email_id}/replace").status_code == 409


# ---------------------------------------------------------------------------------------
# A new phone (seed 002, done better): the old app works until the new one is proved


def test_moving_the_app_to_a_new_phone(app, world: World, mailbox):
    desk, clock = world.desk, world.clock
    started = post(desk, f"{PAGE}/factors/{world.app_id}/replace")
    assert started.headers["Location"] == "/mfa/setup/app"
    scan = html(desk.client.get("/mfa/setup/app"))
    assert factor_kinds.get("totp").replace_hint in scan
    new_secret = KEY_RE.search(scan).group(1).replace(" ", "")
    assert new_secret != world.secret
    # Until the new phone is proved, the old one signs in (and only it).
    laptop = browser(app)
    clock.shift(timedelta(seconds=30))
    laptop.login()
    assert laptop.verify_totp(pyotp.TOTP(new_secret).now()).status_code == 422
    assert laptop.verify_totp(pyotp.TOTP(world.secret).now()).headers["Location"] == "/"
    laptop.logout()

    clock.shift(timedelta(seconds=30))
    confirming = pyotp.TOTP(new_secret).now()
    proved = desk.post("/mfa/setup/app/code", {"code": confirming})
    assert proved.headers["Location"] == "/mfa/setup/remember"  # codes exist: none shown
    desk.post("/mfa/setup/remember", {"remember": "no"})
    done_page = html(desk.client.get("/mfa/setup/done"))
    assert "Your authenticator app is set up." in done_page
    assert "Back to your security page" in done_page
    assert desk.post("/mfa/setup/done").headers["Location"] == PAGE
    assert "Your authenticator app is set up." in html(desk.client.get(PAGE))

    # From now on only the new phone; the code that proved it is spent already.
    laptop.login()
    assert laptop.verify_totp(confirming).status_code == 422
    assert laptop.verify_totp(pyotp.TOTP(world.secret).now()).status_code == 422
    clock.shift(timedelta(seconds=30))
    assert laptop.verify_totp(pyotp.TOTP(world.secret).now()).status_code == 422
    assert laptop.verify_totp(pyotp.TOTP(new_secret).now()).headers["Location"] == "/"
    assert [e.details["method"] for e in audited(app, "mfa.factor_replaced")] == ["totp"]
    assert "Authenticator app was replaced for your two-step sign-in" in subjects(mailbox)


# ---------------------------------------------------------------------------------------
# A new mobile number or email address, proved before it counts


@pytest.fixture
def sms_world(app, world: World) -> World:
    with app.app_context():
        db.session.execute(sa.update(MfaFactor).values(is_default=False))
        db.session.commit()
    add_factor(app, world.uid, "sms", MOBILE, default=True)
    return world


def _sms_id(app, world: World) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(MfaFactor.id).where(MfaFactor.kind == "sms"))


def test_changing_the_mobile_number(app, sms_world: World, mailbox, sms_inbox):
    world, desk = sms_world, sms_world.desk
    started = post(desk, f"{PAGE}/factors/{_sms_id(app, world)}/replace")
    assert started.headers["Location"] == "/mfa/setup/sms"
    step = html(desk.client.get("/mfa/setup/sms"))
    assert "Change your mobile number" in step
    assert "Codes keep going to 04******78 until you enter the code we text to the new number" in (
        step
    )
    assert desk.post("/mfa/setup/sms", {"number": "0498 765 432"}).status_code == 303
    assert len(sms_inbox.to(NEW_MOBILE)) == 1 and sms_inbox.to(MOBILE) == []
    # Not proved yet: a sign-in elsewhere still gets its code on the old number.
    laptop = browser(app)
    laptop.login()
    assert len(sms_inbox.to(MOBILE)) == 1
    assert laptop.verify_totp(last_sms(sms_inbox, MOBILE)).headers["Location"] == "/"

    proved = desk.post("/mfa/setup/sms/code", {"code": last_sms(sms_inbox, NEW_MOBILE)})
    assert proved.status_code == 303
    assert factors_of(app, world.uid)[-1] == ("sms", True, NEW_MOBILE)
    with app.app_context():
        assert db.session.get(User, world.uid).mobile_number == MOBILE  # not asked to change
    [notice] = [m for m in mailbox.to(NURSE) if "new mobile number" in m["Subject"]]
    assert notice["Subject"] == "Your sign-in codes now go to a new mobile number"
    text = mailbox.text(notice)
    assert "now go to the mobile number 04******32" in text
    assert "They no longer go to 04******78." in text
    assert [e.details for e in audited(app, "mfa.code_target_changed")] == [{"method": "sms"}]
    # And from now on to the new number only.
    world.clock.shift(timedelta(minutes=2))
    other = browser(app)
    other.login()
    assert len(sms_inbox.to(NEW_MOBILE)) == 2 and len(sms_inbox.to(MOBILE)) == 1


def test_five_wrong_codes_void_the_number_change(app, sms_world: World, sms_inbox):
    world, desk = sms_world, sms_world.desk
    post(desk, f"{PAGE}/factors/{_sms_id(app, world)}/replace")
    desk.post("/mfa/setup/sms", {"number": NEW_MOBILE})
    right = last_sms(sms_inbox, NEW_MOBILE)
    wrong = "000000" if right != "000000" else "111111"
    for attempt in range(5):
        answer = desk.post("/mfa/setup/sms/code", {"code": wrong})
        assert answer.status_code == 422
        assert (CODE_VOID in html(answer)) is (attempt == 4)
    late = desk.post("/mfa/setup/sms/code", {"code": right})
    assert late.status_code == 422 and CODE_VOID in html(late)
    assert factors_of(app, world.uid)[-1] == ("sms", True, MOBILE)
    laptop = browser(app)
    laptop.login()
    assert len(sms_inbox.to(MOBILE)) == 1 and len(sms_inbox.to(NEW_MOBILE)) == 1


def test_changing_the_email_address(app, world: World, mailbox):
    desk = world.desk
    post(desk, f"{PAGE}/factors/{world.email_id}/replace")
    step = html(desk.client.get("/mfa/setup/email"))
    assert "Change the email address for your codes" in step
    assert "New email address for your codes" in step
    assert "Codes keep going to n****@clinic.example" in step
    bad = desk.post("/mfa/setup/email", {"email": "not an address"})
    assert bad.status_code == 422
    home = "nico@home.example"
    assert desk.post("/mfa/setup/email", {"email": home}).status_code == 303
    assert factors_of(app, world.uid)[1] == ("email", False, NURSE)  # not yet
    assert desk.post("/mfa/setup/email/code", {"code": last_code(mailbox, home)}).status_code == 303
    assert factors_of(app, world.uid)[1] == ("email", False, home)
    told = [m for m in mailbox.messages if "new email address" in m["Subject"]]
    assert [m["To"] for m in told] == [NURSE]  # the old address is the account's
    assert "They no longer go to n****@clinic.example." in mailbox.text(told[0])

    # Again, from the home address to another: both the old one and the account's are told.
    mailbox.clear()
    desk.post("/mfa/setup/done")
    world.clock.shift(timedelta(minutes=2))
    post(desk, f"{PAGE}/factors/{world.email_id}/replace")
    desk.post("/mfa/setup/email", {"email": "nico@work.example"})
    desk.post("/mfa/setup/email/code", {"code": last_code(mailbox, "nico@work.example")})
    told = [m["To"] for m in mailbox.messages if "new email address" in m["Subject"]]
    assert sorted(told) == sorted([NURSE, home])


# ---------------------------------------------------------------------------------------
# Adding a way through the wizard, back to the security page


def test_adding_a_way_returns_to_the_security_page(app, world: World, mailbox, sms_inbox):
    only_the_app(world)
    desk = world.desk
    assert "Add another way to get codes" in html(desk.client.get(PAGE))
    choose = html(desk.client.get("/mfa/setup"))
    assert re.search(r'<input checked[^>]*value="email"', choose)  # the first not set up yet
    assert "You have this already: setting it up again replaces it" in choose
    assert "Cancel: back to your security page" in choose
    assert desk.post("/mfa/setup", {"method": "sms"}).headers["Location"] == "/mfa/setup/sms"
    desk.post("/mfa/setup/sms", {"number": ""})  # the profile's number
    proved = desk.post("/mfa/setup/sms/code", {"code": last_sms(sms_inbox, MOBILE)})
    assert proved.headers["Location"] == "/mfa/setup/remember"
    desk.post("/mfa/setup/remember", {"remember": "no"})
    assert desk.post("/mfa/setup/done").headers["Location"] == PAGE
    assert factors_of(app, world.uid) == [("totp", True, None), ("sms", False, MOBILE)]
    assert "Text message (SMS) was set up for your two-step sign-in" in subjects(mailbox)
    assert [e.details["method"] for e in audited(app, "mfa.factor_added")] == ["sms"]


# ---------------------------------------------------------------------------------------
# New recovery codes (FAC-5)


def test_new_recovery_codes_replace_the_old_ones(app, world: World):
    desk = world.desk
    made = post(desk, f"{PAGE}/recovery-codes")
    assert made.headers["Location"] == f"{PAGE}/recovery-codes"
    page = html(desk.client.get(f"{PAGE}/recovery-codes"))
    new = [c.replace("-", "") for c in re.findall(r"<code>([A-Z2-7-]{11})</code>", page)]
    assert len(new) == 10 and not set(new) & set(world.codes)
    assert "They will not be shown again." in page
    text = html(desk.client.get(f"{PAGE}/recovery-codes.txt"))
    assert all(f"{c[:5]}-{c[5:]}" in text for c in new)
    assert "if you cannot use your authenticator app" in text
    assert "Print this page" in html(desk.client.get(f"{PAGE}/recovery-codes/print"))
    saved = desk.post(f"{PAGE}/recovery-codes/saved", page=f"{PAGE}/recovery-codes")
    assert saved.headers["Location"] == PAGE
    # Shown once: the codes are gone from the server.
    assert desk.client.get(f"{PAGE}/recovery-codes").headers["Location"] == f"{PAGE}#recovery"
    assert desk.client.get(f"{PAGE}/recovery-codes.txt").status_code == 303
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 10

    laptop = browser(app)
    laptop.login()
    assert laptop.post("/mfa/challenge/recovery", {"code": world.codes[0]}).status_code == 422
    assert laptop.post("/mfa/challenge/recovery", {"code": new[0]}).headers["Location"] == "/"
    again = browser(app)
    again.login()
    assert again.post("/mfa/challenge/recovery", {"code": new[0]}).status_code == 422
    assert again.post("/mfa/challenge/recovery", {"code": new[1]}).headers["Location"] == "/"


def test_no_recovery_codes_without_a_factor(app, world: World, set_policy):
    set_policy(mode="optional")
    only_the_app(world)
    post(world.desk, f"{PAGE}/factors/{world.app_id}/remove", {"confirmed": "yes"})
    assert "You get recovery codes when you set up two-step sign-in." in html(
        world.desk.client.get(PAGE)
    )
    refused = post(world.desk, f"{PAGE}/recovery-codes")
    assert refused.status_code == 409 and "Set up two-step sign-in first" in html(refused)
