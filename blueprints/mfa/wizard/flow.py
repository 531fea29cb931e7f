"""The wizard's machinery: who may be in it, its steps in one table, and how a step opens.

Which stage a setup is at lives in the ``mfa_setups`` row (services/enrolment.py), so a URL or
form field cannot move it. This table says, for each step: its name for "Step n of m", the
endpoint that shows it, the stages at which it may be opened, the stage it is the home of
(where a visitor at that stage is sent), and its other endpoints. The pending-sign-in guard
(blueprints/mfa/pending_guard.py) allows exactly the endpoints listed here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from flask import Response, flash, url_for
from flask.typing import ResponseReturnValue

from blueprints.auth.fresh import stale
from blueprints.htmx import redirect_to, render
from models import ClinicPolicy, MfaSetup, User, UserSession
from models.sessions import ACTIVE, STEP_SETUP
from services import enrolment, factor_kinds, factors, policy, recovery, requirement, sessions
from services.policy import remember_days_for

PAGE = "mfa/setup.html"
TARGET = "#wizard"  # the element every step's partial is swapped into


@dataclass(frozen=True)
class Step:
    name: str  # shown as "Step n of m"; also names the partial mfa/_step_<name>.html
    endpoint: str  # the GET that shows it
    opens_at: tuple[str, ...]  # setup stages at which it may be opened; () = any, or none yet
    home_of: str | None = None  # the stage whose visitor is sent here
    also: tuple[str, ...] = ()  # its other endpoints (POSTs, downloads)
    code_sending: bool | None = None  # only for kinds that send codes (True) or do not (False)
    counted: bool = True  # in "Step n of m" (the closing page is not a step to take)


STEPS: tuple[Step, ...] = (
    Step("choose", "mfa.setup", (), also=("mfa.setup_post", "mfa.setup_decline")),
    Step("scan", "mfa.setup_scan", (enrolment.SCAN,), enrolment.SCAN, code_sending=False),
    Step(
        "code",
        "mfa.setup_code",
        (enrolment.SCAN,),
        also=("mfa.setup_code_post",),
        code_sending=False,
    ),
    Step(
        "confirm",
        "mfa.setup_contact",
        (enrolment.CONFIRM, enrolment.CODE),
        enrolment.CONFIRM,
        also=("mfa.setup_contact_post",),
        code_sending=True,
    ),
    Step(
        "code",
        "mfa.setup_contact_code",
        (enrolment.CODE,),
        enrolment.CODE,
        also=("mfa.setup_contact_code_post", "mfa.setup_contact_resend"),
        code_sending=True,
    ),
    Step(
        "recovery",
        "mfa.setup_recovery",
        (enrolment.RECOVERY, enrolment.REMEMBER),
        enrolment.RECOVERY,
        also=("mfa.setup_recovery_post", "mfa.setup_recovery_download", "mfa.setup_recovery_print"),
    ),
    Step(
        "remember",
        "mfa.setup_remember",
        (enrolment.REMEMBER,),
        enrolment.REMEMBER,
        also=("mfa.setup_remember_post",),
    ),
    Step(
        "done",
        "mfa.setup_done",
        (enrolment.DONE,),
        enrolment.DONE,
        also=("mfa.setup_done_post",),
        counted=False,
    ),
)
ENDPOINTS = frozenset(e for step in STEPS for e in (step.endpoint, *step.also))
_BY_ENDPOINT = {step.endpoint: step for step in STEPS}
_HOMES = {step.home_of: step for step in STEPS if step.home_of}


@dataclass
class Visitor:
    """Who is in the wizard and how they got here."""

    user: User
    row: UserSession
    policy: ClinicPolicy

    @property
    def pending(self) -> bool:
        return self.row.state != ACTIVE

    @property
    def remember_days(self) -> int:
        """Days this person may have this device remembered; 0 when not offered."""
        return remember_days_for(self.user, self.policy)

    @property
    def requirement(self) -> requirement.Requirement:
        """What the policy asks of this person today (the choose step says when it is due)."""
        return requirement.of(self.user, self.policy)


def visitor() -> Visitor | None:
    """A signed-in user, or a pending sign-in whose step is setup; else None."""
    row = sessions.current()
    if row is None:
        return None
    if row.state != ACTIVE and row.pending_step != STEP_SETUP:
        return None
    return Visitor(user=row.user, row=row, policy=policy.current())


def _kind_of(setup: MfaSetup | None) -> factor_kinds.FactorKind:
    return factor_kinds.get(setup.kind) if setup else factor_kinds.enrollable()[0]


def steps_for(who: Visitor, setup: MfaSetup | None) -> list[Step]:
    """The steps this person walks with this setup, for "Step n of m"."""
    sends = _kind_of(setup).sends_codes
    # Recovery codes are shown with the first factor only; while the setup has them to
    # show, or will make them, the step counts.
    shows_codes = bool(setup and setup.recovery_codes_encrypted) or (
        (setup is None or setup.stage in enrolment.BEFORE_PROOF)
        and recovery.remaining(who.user.id) == 0
    )
    chosen = []
    for step in STEPS:
        if not step.counted or (step.code_sending is not None and step.code_sending != sends):
            continue
        if step.name == "recovery" and not shows_codes:
            continue
        if step.name == "remember" and who.remember_days <= 0:
            continue
        chosen.append(step)
    return chosen


def where_to(setup: MfaSetup | None) -> str:
    """The URL of the step a visitor with this setup belongs on."""
    if setup is None:
        return url_for("mfa.setup")
    step = _HOMES[setup.stage]
    if step.code_sending:
        return url_for(step.endpoint, kind=setup.kind)
    return url_for(step.endpoint)


def page(
    who: Visitor,
    setup: MfaSetup | None,
    endpoint: str,
    status: int = 200,
    *,
    partial: str,
    **ctx,
) -> Response:
    """Render the step shown at ``endpoint`` as page or partial, with "Step n of m"."""
    step = _BY_ENDPOINT[endpoint]
    walked = steps_for(who, setup)
    return render(
        PAGE,
        partial,
        status,
        step=step.name,
        step_number=walked.index(step) + 1 if step in walked else len(walked),
        step_count=len(walked),
        step_template=partial,
        visitor=who,
        setup=setup,
        kind=_kind_of(setup),
        support=who.policy.support_contact,
        replacing=replacing(who, setup),
        **ctx,
    )


def replacing(who: Visitor, setup: MfaSetup | None) -> str | None:
    """While a setup that will replace a factor of its kind is not yet proved: where that
    factor's codes go now, masked ("" for the app), for the step that says the old one keeps
    working until then. None when nothing is being replaced."""
    if setup is None or setup.stage not in enrolment.BEFORE_PROOF:
        return None
    current = factors.of_kind(who.user.id, setup.kind)
    if current is None:
        return None
    return factor_kinds.get(setup.kind).shown_as(current.target) or ""


def to_sign_in() -> Response:
    flash("Please sign in to continue.", "info")
    return redirect_to(url_for("auth.sign_in"))


def at_stage(
    endpoint: str,
) -> Callable[[Callable[..., ResponseReturnValue]], Callable[..., ResponseReturnValue]]:
    """Open a view of the step shown at ``endpoint`` only while the setup is at one of the
    stages the table gives it (and of the URL's ``kind``); otherwise send the visitor to where
    they belong. A signed-in visitor must be fresh (ACC-3). The view gets (visitor, setup, ...)."""
    stages = _BY_ENDPOINT[endpoint].opens_at

    def decorate(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
        @wraps(view)
        def step(**kwargs: str) -> ResponseReturnValue:
            who = visitor()
            if who is None:
                return to_sign_in()
            again = stale()
            if again is not None:
                return again
            setup = enrolment.current(who.user.id)
            kind = kwargs.get("kind")
            if setup is None or setup.stage not in stages or (kind and setup.kind != kind):
                return redirect_to(where_to(setup))
            return view(who, setup, **kwargs)

        return step

    return decorate
