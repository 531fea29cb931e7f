"""Links into the users list (ADM-7), which is built on a sibling branch: until it is merged
here, ``url_for`` cannot build its URLs, so they are written out once, in this helper.

After the merge this becomes ``url_for("admin.users", **filters)``; its tests (in
tests/test_readiness_page.py) then keep holding it to the same URLs.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import url_for


def users_list(**filters: str | int | None) -> str:
    """/admin/users with ``role=<id>``, ``status=enrolled|not_enrolled|exempt|locked|bypass``
    and ``q=<search>``; empty filters are left out."""
    query = urlencode({key: value for key, value in filters.items() if value not in (None, "")})
    return url_for("admin.index") + "/users" + (f"?{query}" if query else "")
