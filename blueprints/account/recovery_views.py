"""New recovery codes (FAC-5, ACC-2): the old ones stop working at once; the new ones are
shown once, with download and print as in the wizard, until "I have saved them"."""

from __future__ import annotations

from collections.abc import Callable

from flask import flash, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required

from blueprints.account import bp
from blueprints.account.security_views import answer, me
from blueprints.auth.fresh import fresh_required
from blueprints.htmx import redirect_to
from blueprints.mfa import recovery_files
from blueprints.mfa.forms import ConfirmForm
from models import MfaSetup, User, db
from services import account, audit, enrolment, factor_kinds, factors, notify, recovery

BACK = "account.security"


def _held(user: User) -> tuple[MfaSetup | None, list[str]]:
    """The setup row holding new codes not yet saved, and the codes as shown."""
    setup = enrolment.current(user.id)
    if setup is None or setup.kind != factor_kinds.RECOVERY.name:
        return None, []
    return setup, [recovery.display(code) for code in enrolment.recovery_codes(setup)]


def _stands_in_for(user: User) -> factor_kinds.FactorKind:
    """The factor the codes stand in for at sign-in: the default one (for "if you cannot use
    your authenticator app" in the file and on paper)."""
    mine = factors.for_user(user.id)
    chosen = next((f for f in mine if f.is_default), mine[0] if mine else None)
    return factor_kinds.get(chosen.kind) if chosen else factor_kinds.RECOVERY


@bp.post("/security/recovery-codes")
@login_required
@fresh_required
def new_recovery_codes() -> ResponseReturnValue:
    """Make a new set (refused, 409, without a factor to recover), then show it."""
    user, _ = me()
    try:
        made = account.replace_recovery_codes(user)
    except account.Refused as refusal:
        db.session.rollback()
        return answer("recovery", str(refusal), status=409)
    audit.record("recovery.codes_replaced", actor=user, subject=user, count=len(made))
    db.session.commit()
    notify.recovery_codes_replaced(user, len(made))
    db.session.commit()
    return redirect_to(url_for("account.recovery_codes"))


def _shown(show: Callable[[User, list[str]], ResponseReturnValue]) -> ResponseReturnValue:
    """``show`` the new codes while they wait to be saved; once saved, back to the page."""
    user, _ = me()
    _, codes = _held(user)
    if not codes:
        return redirect_to(url_for(BACK, _anchor="recovery"))
    return show(user, codes)


@bp.get("/security/recovery-codes")
@login_required
@fresh_required
def recovery_codes() -> ResponseReturnValue:
    """The new codes, once: with download, print and "I have saved them"."""
    return _shown(
        lambda user, codes: render_template(
            "account/recovery_codes.html",
            codes=codes,
            kind=_stands_in_for(user),
            form=ConfirmForm(),
        )
    )


@bp.get("/security/recovery-codes.txt")
@login_required
@fresh_required
def recovery_codes_download() -> ResponseReturnValue:
    return _shown(lambda user, codes: recovery_files.download(codes, user, _stands_in_for(user)))


@bp.get("/security/recovery-codes/print")
@login_required
@fresh_required
def recovery_codes_print() -> ResponseReturnValue:
    return _shown(lambda user, codes: recovery_files.printable(codes, user, _stands_in_for(user)))


@bp.post("/security/recovery-codes/saved")
@login_required
def recovery_codes_saved() -> ResponseReturnValue:
    """Forget the only plaintext copy. No fresh sign-in needed: it only takes away."""
    user, _ = me()
    setup, _ = _held(user)
    if setup is not None:
        enrolment.finish(setup)
        db.session.commit()
    flash("Your new recovery codes are ready to use.", "success")
    return redirect_to(url_for(BACK))
