"""The security settings page, the rollout by role, one person's rules and their CLI twins
(ADM-2..5, DEV-2, DEV-3, WIZ-5, OPS-4): what is saved, what is refused and why, what is
audited, and the impact shown before a change that strands people."""

from __future__ import annotations

import re
from datetime import date, timedelta
from html import unescape

import pyotp
import pytest
import sqlalchemy as sa

from models import AuditEvent, ClinicPolicy, Role, User, db
from services import localtime
from tests.admin_forms import security_settings
from tests.clinic_seed import seed_clinic
from tests.conftest import AuthActions

ADMIN = "boss@clinic.example"


@pytest.fixture
def admin(app, client, auth, make_user, enrol_totp) -> AuthActions:
    admin_id = make_user(ADMIN, role="Administrator", full_name="Bo Boss")
    secret, _ = enrol_totp(admin_id)
    auth.login(ADMIN)
    assert auth.verify_totp(pyotp.TOTP(secret).now()).status_code == 303
    return auth


def form(auth: AuthActions, **values: object) -> dict[str, object]:
    return security_settings(auth.csrf_token("/admin/security"), **values)


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)
            )
        )


def clinic(app) -> ClinicPolicy:
    with app.app_context():
        from services import policy

        row = policy.current()
        db.session.commit()
        return row


def text(response) -> str:
    return unescape(response.get_data(as_text=True))


# --- the clinic's settings --------------------------------------------------------------


def test_saving_settings_is_audited_with_before_and_after(app, client, admin):
    response = client.post(
        "/admin/security",
        data=form(admin, support_contact="Sam at reception, ext 204", remember_days="30"),
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/security"
    assert "Settings saved." in text(client.get("/admin/security"))
    saved = clinic(app)
    assert (saved.support_contact, saved.remember_days) == ("Sam at reception, ext 204", 30)
    [event] = events(app, "admin.policy_changed")
    assert event.details["before"] == {"remember_days": 90, "support_contact": ""}
    assert event.details["after"] == {
        "remember_days": 30,
        "support_contact": "Sam at reception, ext 204",
    }
    with app.app_context():
        actor = db.session.get(User, event.actor_id)
        assert actor.email == ADMIN


def test_saving_nothing_new_says_so_and_audits_nothing(app, client, admin):
    client.post("/admin/security", data=form(admin))
    assert "Nothing changed." in text(client.get("/admin/security"))
    assert events(app, "admin.policy_changed") == []


def test_htmx_save_answers_with_the_form_and_the_role_counts(app, client, admin):
    response = client.post(
        "/admin/security",
        data=form(admin, support_contact="ext 204"),
        headers={"HX-Request": "true"},
    )
    body = text(response)
    assert response.status_code == 200
    assert "<html" not in body
    assert '<div class="alert alert-success" role="status">Settings saved.</div>' in body
    assert '<section id="rollout" aria-labelledby="rollout-heading" hx-swap-oob="true">' in body
    # The re-rendered form does not carry the confirmation over to the next change.
    assert 'name="confirmed" type="hidden" value=""' in body


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"remember_days": "91"}, "remember_days", "Remember days must be between 0 (off) and 90."),
        ({"code_valid_minutes": "11"}, "code_valid_minutes", "Codes may stay valid for 1 to 10"),
        ({"same_location_days": "0"}, "same_location_days", "Same-location days must be between"),
        ({"methods": None}, "methods", "Allow at least one way."),
        (
            {"methods": ["totp", "carrier-pigeon"]},
            "methods",
            "'carrier-pigeon' is not a valid choice for this field.",
        ),
        ({"mode": "sometimes"}, "mode", "Not a valid choice"),
        ({"remember_days": "lots"}, "remember_days", "Not a valid integer value."),
    ],
)
def test_bad_values_are_refused_at_their_field(app, client, admin, values, field, message):
    response = client.post("/admin/security", data=form(admin, **values))
    assert response.status_code == 422
    body = text(response)
    error = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', body)
    assert error is not None and error.group(1).startswith(message), body[:200]
    assert clinic(app).remember_days == 90
    assert events(app, "admin.policy_changed") == []


def test_a_method_that_cannot_be_delivered_is_refused(app, client, admin):
    app.config["MFA_SMS_GATEWAY"] = None
    response = client.post("/admin/security", data=form(admin, methods=["totp", "sms"]))
    assert response.status_code == 422
    assert "Text message (SMS) cannot be allowed yet." in text(response)


@pytest.mark.parametrize(
    "change",
    [{"mode": "required"}, {"methods": ["email"]}, {"methods": ["totp", "sms"]}],
    ids=["to-required", "method-off", "sms-on"],
)
def test_risky_changes_ask_to_confirm_first(app, client, admin, change):
    if change.get("methods") == ["email"]:
        client.post("/admin/security", data=form(admin, methods=["totp", "email"], confirmed="yes"))
    before = clinic(app)
    response = client.post("/admin/security", data=form(admin, **change))
    assert response.status_code == 200
    assert '<h1 id="confirm-heading">Check before saving</h1>' in text(response)
    after = clinic(app)
    assert (after.mode, after.allowed_methods) == (before.mode, before.allowed_methods)
    # "Go back" shows the form with what was chosen, and saves nothing.
    back = client.post("/admin/security", data=form(admin, confirmed="back", **change))
    assert back.status_code == 200
    assert "Security settings" in text(back) and "Check before saving" not in text(back)
    assert clinic(app).allowed_methods == before.allowed_methods
    # Confirmed: saved.
    saved = client.post("/admin/security", data=form(admin, confirmed="yes", **change))
    assert saved.status_code == 303
    after = clinic(app)
    assert after.mode == change.get("mode", "off")
    assert after.allowed_methods == ",".join(change.get("methods", ["totp"]))


def test_the_confirmation_is_a_partial_for_htmx_and_a_page_without(app, client, admin):
    partial = client.post(
        "/admin/security", data=form(admin, mode="required"), headers={"HX-Request": "true"}
    )
    assert "<html" not in text(partial)
    assert '<h2 id="confirm-heading">Check before saving</h2>' in text(partial)
    page = client.post("/admin/security", data=form(admin, mode="required"))
    assert "<title>Check before saving · Harbour Clinic</title>" in text(page)
    # Its Save button carries every posted value back, plus the confirmation.
    forms = re.findall(r'<form method="post"[^>]*>(.*?)</form>', text(page), re.S)
    [save] = [f for f in forms if 'name="confirmed" value="yes"' in f]
    for hidden in [
        'name="mode" value="required"',
        'name="methods" value="totp"',
        'name="admins_app_only" value="y"',
        'name="remember_days" value="90"',
        'name="confirmed" value="yes"',
    ]:
        assert hidden in save


def confirm_numbers(body: str) -> tuple[int, int]:
    numbers = re.findall(r"<dt>(\d+) (?:person|people)</dt>", body)
    assert len(numbers) == 2, body
    return int(numbers[0]), int(numbers[1])


def test_impact_numbers_match_the_database(app, client, admin):
    """A clinic on Optional with app and email allowed switches email off and makes two-step
    sign-in required: the preview's numbers are counted here independently of the app."""
    traits = seed_clinic(app)
    client.post(
        "/admin/security",
        data=form(admin, mode="optional", methods=["totp", "email"], confirmed="yes"),
    )
    with app.app_context():
        # Everyone active but the admin signed in (who has an app and keeps it).
        active = set(
            db.session.scalars(sa.select(User.id).where(User.active.is_(True), User.email != ADMIN))
        )
    people = active - traits["admin"]
    # After: only the app. Admins may only use the app anyway (admins_app_only).
    had_usable = {u for u in people if u in traits["totp"] or u in traits["email"]} | {
        u for u in active & traits["admin"] if u in traits["totp"]
    }
    keeps = {u for u in active if u in traits["totp"]}
    losing = (had_usable - keeps) - traits["exempt"]
    not_enrolled = {u for u in active - had_usable - keeps if u not in traits["exempt"]}
    response = client.post("/admin/security", data=form(admin, mode="required"))
    assert "Check before saving" in text(response)
    assert confirm_numbers(text(response)) == (len(losing), len(not_enrolled))
    assert len(losing) > 20 and len(not_enrolled) > 20  # the seed makes the numbers mean something


def test_enabling_sms_names_exactly_the_people_without_a_mobile(app, client, admin):
    traits = seed_clinic(app, 120)
    response = client.post("/admin/security", data=form(admin, methods=["totp", "sms"]))
    body = text(response)
    listed = set(re.findall(r'<a href="/admin/users/(\d+)">', body))
    with app.app_context():
        active = set(db.session.scalars(sa.select(User.id).where(User.active.is_(True))))
    # Administrators may only use the app (admins_app_only), so SMS is not theirs to choose.
    expected = (traits["no_mobile"] & active) - traits["admin"]
    assert {int(i) for i in listed} == expected
    assert f"{len(expected)} people could choose text messages but have no mobile number" in body


# --- the rollout by role ------------------------------------------------------------------


def role_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Role.id).where(Role.name == name))


def test_a_role_gets_a_go_live_date(app, client, admin):
    reception = role_id(app, "Reception")
    go_live = localtime_today(app) + timedelta(days=30)
    response = client.post(
        f"/admin/security/roles/{reception}",
        data={
            "csrf_token": admin.csrf_token("/admin/security"),
            f"role-{reception}-mode": "required",
            f"role-{reception}-required_from": go_live.isoformat(),
        },
        headers={"HX-Request": "true"},
    )
    body = text(response)
    assert response.status_code == 200
    assert body.lstrip().startswith(f'<form id="role-{reception}"')
    assert "Reception: saved." in body
    assert f"Required from {go_live.day} {go_live:%B %Y}, in 30 days." in body
    with app.app_context():
        role = db.session.get(Role, reception)
        assert (role.mfa_mode, role.mfa_required_from) == ("required", go_live)
    [event] = events(app, "admin.role_policy_changed")
    assert event.details == {
        "role": "Reception",
        "before": {"mode": "default", "required_from": None},
        "after": {"mode": "required", "required_from": go_live.isoformat()},
    }


def localtime_today(app) -> date:
    with app.app_context():
        return localtime.today()


@pytest.mark.parametrize(
    ("mode", "days", "message"),
    [
        ("required", -1, "Choose today or a later date, or leave it empty to require it now."),
        ("optional", 10, "A go-live date only applies to Required."),
        ("sometimes", None, "Not a valid choice"),
    ],
)
def test_a_role_date_that_makes_no_sense_is_refused(app, client, admin, mode, days, message):
    reception = role_id(app, "Reception")
    day = "" if days is None else (localtime_today(app) + timedelta(days=days)).isoformat()
    response = client.post(
        f"/admin/security/roles/{reception}",
        data={
            "csrf_token": admin.csrf_token("/admin/security"),
            f"role-{reception}-mode": mode,
            f"role-{reception}-required_from": day,
        },
    )
    assert response.status_code == 422
    assert message in text(response)
    with app.app_context():
        assert db.session.get(Role, reception).mfa_mode == "default"


def test_an_unknown_role_is_404(client, admin):
    response = client.post(
        "/admin/security/roles/999", data={"csrf_token": admin.csrf_token("/admin/security")}
    )
    assert response.status_code == 404


# --- one person's rules -------------------------------------------------------------------


def test_one_person_exempt_and_a_new_mobile_number(app, client, admin, make_user, mailbox):
    nurse = make_user("nurse@clinic.example", full_name="Pat Nurse")
    page = client.get(f"/admin/users/{nurse}")
    assert "Not asked to set it up (the clinic has it off)." in text(page)
    response = client.post(
        f"/admin/users/{nurse}",
        data={
            "csrf_token": admin.csrf_token(f"/admin/users/{nurse}"),
            "override": "exempt",
            "same_location": "off",
            "mobile_number": "0412 345 678",
        },
        headers={"HX-Request": "true"},
    )
    body = text(response)
    assert response.status_code == 200
    assert "Saved." in body and "Not asked for a code: exempt by an administrator." in body
    with app.app_context():
        person = db.session.get(User, nurse)
        assert (person.mfa_override, person.same_location) == ("exempt", False)
        assert person.mobile_number == "+61412345678"
    [event] = events(app, "admin.user_rules_changed")
    assert event.details == {
        "before": {"override": "default", "same_location": "default"},
        "after": {"override": "exempt", "same_location": "off"},
    }
    assert len(events(app, "user.mobile_changed")) == 1
    [mail] = mailbox.to("nurse@clinic.example")
    assert mail["Subject"] == "The mobile number on your account was changed"


def test_a_bad_mobile_number_is_refused_and_nothing_changes(app, client, admin, make_user):
    nurse = make_user("nurse@clinic.example")
    response = client.post(
        f"/admin/users/{nurse}",
        data={
            "csrf_token": admin.csrf_token(f"/admin/users/{nurse}"),
            "override": "required",
            "same_location": "default",
            "mobile_number": "02 9876 5432",
        },
    )
    assert response.status_code == 422
    assert "Enter a mobile number that can receive text messages." in text(response)
    with app.app_context():
        assert db.session.get(User, nurse).mfa_override == "default"


def test_find_a_person_by_email(app, client, admin, make_user):
    nurse = make_user("nurse@clinic.example")
    found = client.get("/admin/users/find?email=Nurse@Clinic.example")
    assert found.headers["Location"] == f"/admin/users/{nurse}"
    missing = client.get("/admin/users/find?email=nobody@clinic.example")
    assert missing.headers["Location"] == "/admin/security#exceptions-heading"
    assert "Nobody has that email address." in text(client.get("/admin/security"))


# --- the same from the command line (OPS-4) -----------------------------------------------


def test_cli_rollout_set_and_show(app, runner):
    go_live = localtime_today(app) + timedelta(days=14)
    result = runner.invoke(
        args=["rollout", "set", "reception", "--mode", "required", "--from", go_live.isoformat()]
    )
    assert result.exit_code == 0, result.output
    assert re.search(
        rf"Reception\s+required from {go_live.isoformat()} \(in 14 days\)\s+0 enrolled",
        result.output,
    )
    [event] = events(app, "admin.role_policy_changed")
    assert event.details["after"] == {"mode": "required", "required_from": go_live.isoformat()}
    past = runner.invoke(
        args=["rollout", "set", "Reception", "--mode", "required", "--from", "2020-01-01"]
    )
    assert past.exit_code == 1
    assert "Choose today or a later date" in past.output
    unknown = runner.invoke(args=["rollout", "set", "Janitor", "--mode", "off"])
    assert unknown.exit_code == 1 and "No role called 'Janitor'" in unknown.output
    shown = runner.invoke(args=["rollout", "show"])
    assert "clinic mode: off" in shown.output and "Practitioner   clinic setting" in shown.output


def test_cli_user_override(app, runner, make_user):
    nurse = make_user("nurse@clinic.example")
    result = runner.invoke(args=["users", "override", "nurse@clinic.example", "exempt"])
    assert result.exit_code == 0 and "nurse@clinic.example: exempt." in result.output
    with app.app_context():
        assert db.session.get(User, nurse).mfa_override == "exempt"
    [event] = events(app, "admin.user_rules_changed")
    assert event.details["after"] == {"override": "exempt"}
    bad = runner.invoke(args=["users", "override", "nurse@clinic.example", "sometimes"])
    assert bad.exit_code == 2


def test_cli_policy_same_location(app, runner):
    result = runner.invoke(args=["policy", "set", "--same-location", "--same-location-days", "7"])
    assert result.exit_code == 0, result.output
    assert "same-location:   yes, 7 days" in result.output
    [event] = events(app, "policy.changed")
    assert event.details["before"] == {"same_location": False, "same_location_days": 30}
    assert event.details["after"] == {"same_location": True, "same_location_days": 7}
    bad = runner.invoke(args=["policy", "set", "--same-location-days", "91"])
    assert bad.exit_code == 1 and "Same-location days must be between 1 and 90." in bad.output


def test_an_api_user_has_no_staff_page(app, client, admin):
    """API users are managed under Admin → API access; the staff page does not open for them,
    nor does the find-by-email box lead there."""
    from services import api_access

    with app.app_context():
        bot = api_access.create_user("Reports")
        db.session.commit()
        bot_id, bot_email = bot.id, bot.email
    assert client.get(f"/admin/users/{bot_id}").status_code == 404
    found = client.get(f"/admin/users/find?email={bot_email}")
    assert found.headers["Location"] == "/admin/security#exceptions-heading"
