"""Rollout notices before a role's go-live date (ADM-3): `flask rollout notify`, run daily.

The clinic is in Sydney and cron runs at 07:15 there, which is still the day before in UTC
(AEDT is UTC+11): a notice that goes out on the right day proves the clinic's day is used.
"""

from __future__ import annotations

import socket
import threading
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine
from click.testing import Result
from flask import Flask
from flask.testing import FlaskCliRunner

from config import ConfigError
from models import AuditEvent, Role, RolloutNotice, User, db
from services import rollout_notices
from tests.conftest import Mailbox, make_app

ZONE = "Australia/Sydney"
GO_LIVE = date(2027, 2, 1)
MOVED = date(2027, 3, 1)
NURSE = "nurse@clinic.example"
SUPPORT = "Clinic IT, extension 200"
PHRASE = (
    "From that day you will be asked to set up two-step sign-in when you sign in, "
    "and cannot continue until you do."
)


def morning(day: date) -> datetime:
    """07:15 in the clinic on ``day``: when cron runs."""
    return datetime.combine(day, time(7, 15), tzinfo=ZoneInfo(ZONE))


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(n) for n in range((last - first).days + 1)]


def set_role(app: Flask, go_live: date | None, *, name: str = "Practitioner") -> None:
    with app.app_context():
        role = db.session.scalar(sa.select(Role).where(Role.name == name))
        role.mfa_mode, role.mfa_required_from = "required", go_live
        db.session.commit()


def notify(runner: FlaskCliRunner, day: date, *args: str) -> Result:
    with time_machine.travel(morning(day), tick=False):
        result = runner.invoke(args=["rollout", "notify", *args])
    assert result.exit_code == 0, result.output
    return result


def daily(runner: FlaskCliRunner, mailbox: Mailbox, first: date, last: date) -> dict[date, list]:
    """Run every morning from ``first`` to ``last``; the mails each run sent, by day."""
    sent = {}
    for day in days(first, last):
        before = len(mailbox.messages)
        notify(runner, day)
        sent[day] = mailbox.messages[before:]
    return sent


def notices(app: Flask) -> list[tuple[str, date, int, bool]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(
                User.email,
                RolloutNotice.go_live,
                RolloutNotice.days_before,
                RolloutNotice.sent_at.is_not(None),
            )
            .join(User, User.id == RolloutNotice.user_id)
            .order_by(RolloutNotice.id)
        )
        return [tuple(row) for row in rows]


def events(app: Flask, name: str) -> list[dict]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(AuditEvent.details)
                .where(AuditEvent.event == name)
                .order_by(AuditEvent.id)
            )
        )


@pytest.fixture
def clinic(app: Flask, set_policy) -> Flask:
    """Practitioners must use two-step sign-in from 1 February 2027; the clinic's mode is off."""
    app.config["MFA_TIME_ZONE"] = ZONE
    set_policy(support_contact=SUPPORT)
    set_role(app, GO_LIVE)
    return app


def test_the_14_and_the_1_day_notice_go_out_once_each_over_a_month(
    clinic, runner, mailbox, make_user
):
    make_user(NURSE, full_name="Ada Nurse")
    sent = daily(runner, mailbox, date(2027, 1, 5), date(2027, 2, 5))

    assert {day: len(mails) for day, mails in sent.items() if mails} == {
        date(2027, 1, 18): 1,  # 14 days before, in Sydney (still 17 January in UTC)
        date(2027, 1, 31): 1,  # the day before
    }
    first, last = sent[date(2027, 1, 18)][0], sent[date(2027, 1, 31)][0]
    for mail, when in ((first, "in 14 days"), (last, "tomorrow")):
        assert mail["To"] == NURSE
        assert mail["Subject"] == "Two-step sign-in is required from 1 February 2027"
        text = " ".join(Mailbox.text(mail).split())
        assert f"Hello Ada Nurse, From 1 February 2027 ({when}), your Harbour Clinic" in text
        assert "for the Practitioner role" in text
        assert PHRASE in text
        assert "Sign in and open this link: http://localhost/mfa/setup" in text
        assert f"Support: {SUPPORT}" in text
        assert "If this was not you" not in text  # not a security event
        html = mail.get_body(preferencelist=("html",)).get_content()
        assert '<a href="http://localhost/mfa/setup">' in html and "1 February 2027" in html
    assert notices(clinic) == [(NURSE, GO_LIVE, 14, True), (NURSE, GO_LIVE, 1, True)]
    assert events(clinic, "rollout.notice_sent") == [
        {"role": "Practitioner", "go_live": "2027-02-01", "days_before": 14},
        {"role": "Practitioner", "go_live": "2027-02-01", "days_before": 1},
    ]


def test_only_people_who_will_have_to_set_it_up_are_emailed(
    clinic, runner, mailbox, make_user, enrol_totp
):
    make_user(NURSE)
    enrol_totp(make_user("enrolled@clinic.example"))
    make_user("exempt@clinic.example", mfa_override="exempt")
    make_user("already@clinic.example", mfa_override="required")  # asked today already
    make_user("left@clinic.example", active=False)
    make_user("desk@clinic.example", role="Reception")  # the clinic's mode: off

    daily(runner, mailbox, date(2027, 1, 17), date(2027, 2, 1))

    assert sorted(m["To"] for m in mailbox.messages) == [NURSE, NURSE]


def test_a_late_run_sends_the_notice_due_now_and_not_an_earlier_one(
    clinic, runner, mailbox, make_user
):
    """Cron missed days, or a person joined the role late: the notice they are owed goes out
    late, but at 1 day left only the 1-day one does."""
    make_user(NURSE)
    notify(runner, date(2027, 1, 22))  # 10 days left: the 14-day notice, late
    assert [m["To"] for m in mailbox.messages] == [NURSE]
    assert "(in 10 days)" in Mailbox.text(mailbox.messages[0])

    make_user("joined@clinic.example")
    sent = daily(runner, mailbox, date(2027, 1, 31), date(2027, 2, 3))
    assert [m["To"] for m in sent[date(2027, 1, 31)]] == [
        "joined@clinic.example",  # its 1-day notice only
        NURSE,
    ]
    assert notices(clinic) == [
        (NURSE, GO_LIVE, 14, True),
        ("joined@clinic.example", GO_LIVE, 1, True),
        (NURSE, GO_LIVE, 1, True),
    ]
    assert not any(sent[day] for day in days(date(2027, 2, 1), date(2027, 2, 3)))


def test_a_moved_date_starts_its_own_notices(clinic, runner, mailbox, make_user):
    make_user(NURSE)
    notify(runner, date(2027, 1, 18))
    assert len(mailbox.messages) == 1

    set_role(clinic, MOVED)
    sent = daily(runner, mailbox, date(2027, 1, 19), date(2027, 3, 2))

    assert [day for day, mails in sent.items() if mails] == [date(2027, 2, 15), date(2027, 2, 28)]
    assert "From 1 March 2027 (in 14 days)" in Mailbox.text(sent[date(2027, 2, 15)][0])
    assert [(go_live, n) for _, go_live, n, _ in notices(clinic)] == [
        (GO_LIVE, 14),
        (MOVED, 14),
        (MOVED, 1),
    ]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nobody listens there once it is closed


def test_a_notice_the_mail_server_refused_goes_out_at_the_next_run(
    clinic, runner, mailbox, make_user
):
    make_user(NURSE)
    working = clinic.config["MAIL_PORT"]
    clinic.config["MAIL_PORT"] = closed_port()
    failed = notify(runner, date(2027, 1, 18))
    assert "sent 0, failed 1" in failed.stdout
    assert "tried again at the next run" in failed.stderr
    assert mailbox.messages == [] and notices(clinic) == []
    [failure] = events(clinic, "mail.failed")
    assert failure["template"] == "rollout_notice"

    clinic.config["MAIL_PORT"] = working
    retried = notify(runner, date(2027, 1, 19))
    assert "sent 1, failed 0" in retried.stdout and retried.stderr == ""
    assert [m["To"] for m in mailbox.messages] == [NURSE]
    assert notices(clinic) == [(NURSE, GO_LIVE, 14, True)]


def test_dry_run_lists_who_would_be_emailed_and_sends_nothing(clinic, runner, mailbox, make_user):
    make_user(NURSE)
    make_user("reception@clinic.example", role="Reception")
    set_role(clinic, date(2027, 1, 25), name="Reception")

    listed = notify(runner, date(2027, 1, 18), "--dry-run")

    assert listed.stdout.splitlines() == [
        "nurse@clinic.example  Practitioner  go-live 2027-02-01  14-day notice",
        "reception@clinic.example  Reception  go-live 2027-01-25  14-day notice",
        "Dry run: 2 would be emailed; nothing was sent.",
    ]
    assert mailbox.messages == [] and notices(clinic) == []
    notify(runner, date(2027, 1, 18))  # nothing was claimed either
    assert sorted(m["To"] for m in mailbox.messages) == [NURSE, "reception@clinic.example"]
    again = notify(runner, date(2027, 1, 19), "--dry-run")  # what was sent is not listed
    assert again.stdout == "Dry run: 0 would be emailed; nothing was sent.\n"


def test_days_from_the_command_line_or_the_configuration(clinic, runner, mailbox, make_user):
    make_user(NURSE)
    assert "sent 0" in notify(runner, date(2027, 1, 25), "--days", "3").stdout  # 7 days left
    notify(runner, date(2027, 1, 29), "--days", "3")  # 3 days left
    clinic.config["MFA_ROLLOUT_NOTICE_DAYS"] = (2,)
    notify(runner, date(2027, 1, 30))  # 2 days left
    assert [(n, sent) for _, _, n, sent in notices(clinic)] == [(3, True), (2, True)]

    with time_machine.travel(morning(date(2027, 1, 29)), tick=False):
        refused = runner.invoke(args=["rollout", "notify", "--days", "14,0"])
    assert refused.exit_code == 2 and "1 or more" in refused.output


def test_notice_days_are_checked_at_start(monkeypatch):
    monkeypatch.setenv("MFA_ROLLOUT_NOTICE_DAYS", " 7, 30,7 ")
    assert make_app("sqlite://").config["MFA_ROLLOUT_NOTICE_DAYS"] == (30, 7)
    monkeypatch.setenv("MFA_ROLLOUT_NOTICE_DAYS", "14,one")
    with pytest.raises(ConfigError, match="MFA_ROLLOUT_NOTICE_DAYS: 'one' is not a whole number"):
        make_app("sqlite://")


def test_a_claim_left_by_a_run_that_died_is_taken_over_after_an_hour(
    clinic, runner, mailbox, make_user
):
    nurse = make_user(NURSE)
    claimed_at = morning(date(2027, 1, 18)).astimezone(UTC)
    with clinic.app_context():
        role_id = db.session.scalar(sa.select(Role.id).where(Role.name == "Practitioner"))
        db.session.add(
            RolloutNotice(
                user_id=nurse,
                role_id=role_id,
                go_live=GO_LIVE,
                days_before=14,
                claimed_at=claimed_at,
            )
        )
        db.session.commit()

    with time_machine.travel(claimed_at + timedelta(minutes=50), tick=False):
        assert runner.invoke(args=["rollout", "notify"]).stdout.startswith(
            "Rollout notices: sent 0"
        )
    assert mailbox.messages == []  # that run may still be sending
    with time_machine.travel(claimed_at + timedelta(minutes=70), tick=False):
        assert runner.invoke(args=["rollout", "notify"]).stdout.startswith(
            "Rollout notices: sent 1"
        )
    assert [m["To"] for m in mailbox.messages] == [NURSE]
    assert notices(clinic) == [(NURSE, GO_LIVE, 14, True)]


def test_two_runs_at_once_send_each_notice_once(database_url, clinic, mailbox, make_user):
    """Two cron runs (say, two servers) on one database, released together at a barrier."""
    people = sorted(f"staff{n}@clinic.example" for n in range(12))
    for email in people:
        make_user(email)
    other = make_app(database_url, MFA_TIME_ZONE=ZONE)
    barrier = threading.Barrier(2)
    outcomes: list[rollout_notices.Outcome] = []

    def run(app: Flask) -> None:
        with app.app_context():
            barrier.wait(timeout=20)
            outcomes.append(rollout_notices.send_due())
            db.session.remove()

    try:
        with time_machine.travel(morning(date(2027, 1, 18)), tick=False):
            threads = [threading.Thread(target=run, args=(a,)) for a in (clinic, other)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
    finally:
        with other.app_context():
            db.engine.dispose()

    assert len(outcomes) == 2, "a run did not finish"
    assert sorted(m["To"] for m in mailbox.messages) == people
    assert sum(o.sent for o in outcomes) == len(people) and all(o.failed == 0 for o in outcomes)
    assert len(events(clinic, "rollout.notice_sent")) == len(people)


def test_a_notice_sent_since_the_list_was_read_is_not_sent_again(
    clinic, mailbox, make_user, monkeypatch
):
    """A slow run (a mail server timing out on many people) holds a list read long ago; by
    the time it reaches someone, another run may have sent them the notice."""
    make_user(NURSE)
    start = morning(date(2027, 1, 18))
    with clinic.app_context(), time_machine.travel(start, tick=False):
        stale = rollout_notices.due()
        assert rollout_notices.send_due() == rollout_notices.Outcome(sent=1)
    monkeypatch.setattr(rollout_notices, "due", lambda days=None: stale)
    with clinic.app_context(), time_machine.travel(start + timedelta(hours=3), tick=False):
        assert rollout_notices.send_due() == rollout_notices.Outcome(sent=0)
    assert [m["To"] for m in mailbox.messages] == [NURSE]
