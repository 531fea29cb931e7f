"""INSERT ... ON CONFLICT, which SQLite and PostgreSQL both speak, from the dialect in use.

An atomic "insert, or else update / do nothing" keeps counters and claims right when
several workers or instances race on one row (OPS-3).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from models import db


def insert(model: Any) -> Any:
    """``insert(model)`` with ``on_conflict_do_update`` and ``on_conflict_do_nothing``."""
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)
