"""Recovery codes shown once, as a file to save and a page to print: the same for the wizard's
first set and for new codes made on the security page."""

from __future__ import annotations

from flask import Response, make_response, render_template

from models import User
from services.factor_kinds import FactorKind


def download(codes: list[str], user: User, kind: FactorKind) -> Response:
    """The codes as a text file; ``kind`` is the factor they stand in for."""
    body = render_template("mfa/recovery_codes.txt", codes=codes, user=user, kind=kind)
    response = make_response(body)
    response.mimetype = "text/plain"
    response.headers["Content-Disposition"] = 'attachment; filename="recovery-codes.txt"'
    return response


def printable(codes: list[str], user: User, kind: FactorKind) -> str:
    """A page with just the codes, laid out for paper."""
    return render_template("mfa/recovery_print.html", codes=codes, user=user, kind=kind)
