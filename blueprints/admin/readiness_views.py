"""Readiness before go-live (ADM-8, seed 001): per role who is set up, not yet, exempt, with
the go-live date; whose contact details need fixing; which profiles look shared. Read-only;
the rules live in services/golive.py and services/shared_profiles.py."""

from __future__ import annotations

from flask.typing import ResponseReturnValue

from blueprints.admin import bp
from blueprints.admin.links import users_list
from blueprints.htmx import render
from models import db
from models.factors import SMS
from services import golive, localtime, policy, readiness, shared_profiles

PAGE = "admin/readiness.html"


@bp.get("/readiness")
def readiness_page() -> ResponseReturnValue:
    """The readiness page; each number links to the users list filtered to those people."""
    clinic = policy.current()
    everyone = readiness.people()
    today = localtime.today()
    context = {
        "clinic": clinic,
        "roles": golive.roles(clinic, everyone),
        "standings": readiness.STANDINGS,
        "sms_allowed": SMS in clinic.methods,
        "without_mobile": golive.without_mobile(clinic, everyone),
        "email_unconfirmed": golive.email_unconfirmed(clinic, everyone),
        "shared": shared_profiles.find(),
        "shared_rule": shared_profiles,
        "users_list": users_list,
        "today": today,
    }
    db.session.commit()  # policy.current() may have created the clinic's first policy row
    return render(PAGE, PAGE, **context)
