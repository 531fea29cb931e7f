"""The audit log (ADM-9): every security event, filtered, newest first, and its CSV export.

Read-only: no route here (or anywhere) changes or deletes an event, and the database refuses
to (migration 0011). The rules live in services/audit_log.py.
"""

from __future__ import annotations

from flask import Response, request, stream_with_context
from flask.typing import ResponseReturnValue
from flask_login import current_user

from blueprints.admin import bp
from blueprints.admin.audit_forms import AuditFilterForm
from blueprints.auth.fresh import fresh_required
from blueprints.htmx import render
from models import db
from services import audit, audit_log
from services.audit_log import Cursor

PAGE = "admin/audit.html"
PARTIAL = "admin/_audit.html"
BROKEN_CURSOR = "That page link is not one this page made. Start again from the newest events."
TWO_CURSORS = "A page link carries either Older or Newer, not both."


def _cursors() -> tuple[Cursor | None, Cursor | None]:
    """``before`` (Older) and ``after`` (Newer) from the query string; ValueError with the
    message to show when they are not what this page writes."""
    before, after = request.args.get("before", ""), request.args.get("after", "")
    if before and after:
        raise ValueError(TWO_CURSORS)
    try:
        return (
            Cursor.parse(before) if before else None,
            Cursor.parse(after) if after else None,
        )
    except ValueError:
        raise ValueError(BROKEN_CURSOR) from None


def _answer(form: AuditFilterForm, status: int, **context: object) -> Response:
    return render(PAGE, PARTIAL, status, form=form, **context)


@bp.get("/audit")
def audit_log_page() -> ResponseReturnValue:
    """The log, newest first, 50 events a page. Cases: no filter; filters (a bad one: 400 with
    the form's messages, no rows); an Older (``before``) or Newer (``after``) link, whose
    cursor is checked (a forged one: 400). The filter form and the page links answer htmx
    with the results partial, everyone else with the page, from the same URL."""
    form = AuditFilterForm(request.args)
    if not form.validate():
        return _answer(form, 400)
    try:
        before, after = _cursors()
    except ValueError as problem:
        return _answer(form, 400, link_error=str(problem), filters=form.filters())
    filters = form.filters()
    found = audit_log.page(filters, before=before, after=after)
    return _answer(form, 200, found=found, filters=filters)


@bp.get("/audit.csv")
@fresh_required
def audit_csv() -> ResponseReturnValue:
    """Every event the filters match, as CSV, streamed in batches (constant memory). A bulk
    copy of who signed in from where: it needs a fresh sign-in, and is itself audited."""
    form = AuditFilterForm(request.args)
    if not form.validate():
        return _answer(form, 400)
    filters = form.filters()
    audit.record("audit.exported", actor=current_user, filters=filters.args(), via="web")
    db.session.commit()
    response = Response(stream_with_context(audit_log.csv_chunks(filters)), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{audit_log.export_name()}"'
    return response
