"""Links into the users list (ADM-7) with its filters, for the pages that count people."""

from __future__ import annotations

from flask import url_for


def users_list(**filters: str | int | None) -> str:
    """/admin/users with ``role=<id>``, ``status=enrolled|not_enrolled|exempt|locked|bypass``
    and ``q=<search>``; empty filters are left out."""
    return url_for("admin.users", **{k: v for k, v in filters.items() if v not in (None, "")})
