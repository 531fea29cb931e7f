"""Who counts as set up, not yet, or exempt (services/readiness.py): the rule in Python
(``standing``) and its SQL twin (``standing_is``, for filtering and counting in the database)
give the same answer for every person under every policy."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models import MfaFactor, User, db
from services import api_access, policy, readiness
from tests.clinic_seed import seed_clinic


@pytest.mark.parametrize(
    ("methods", "admins_app_only"),
    [("totp", True), ("totp,email", True), ("totp,email,sms", False), ("email,sms", True)],
)
def test_sql_and_python_agree_on_everyone(app, make_user, methods, admins_app_only):
    make_user("seed@clinic.example")  # the seed copies this password hash
    for n in range(3):
        make_user(f"excused{n}@clinic.example", mfa_override="exempt")
    seed_clinic(app, 200)
    with app.app_context():
        for n in range(3):  # API users: exempt by kind, even one with a factor
            api_access.create_user(f"Report {n}")
        db.session.flush()
        db.session.add(MfaFactor(user_id=api_access.by_name("Report 0").id, kind="totp"))
        policy.update(methods=methods, admins_app_only=admins_app_only)
        clinic = policy.current()
        active = db.session.scalars(sa.select(User).where(User.active.is_(True))).all()
        people = readiness.people_of(active)
        by_python = {
            standing: {p.user.id for p in people if readiness.standing(p, clinic) == standing}
            for standing in readiness.STANDINGS
        }
        for standing in readiness.STANDINGS:
            in_sql = set(
                db.session.scalars(
                    sa.select(User.id).where(
                        User.active.is_(True), readiness.standing_is(standing, clinic)
                    )
                )
            )
            assert in_sql == by_python[standing], standing
        # The seed makes each answer non-trivial.
        assert all(len(ids) >= 3 for ids in by_python.values()), by_python


def test_people_of_a_page_reads_only_their_factors(app, make_user, enrol_totp):
    a = make_user("a@clinic.example")
    b = make_user("b@clinic.example")
    enrol_totp(a)
    enrol_totp(b)
    with app.app_context():
        only_a = db.session.scalars(sa.select(User).where(User.id == a)).all()
        [person] = readiness.people_of(only_a)
        assert person.kinds == frozenset({"totp"})
        assert readiness.people_of([]) == []
