"""The API's request counters in the app's own database: a storage for ``limits``, used when
no ``MFA_RATELIMIT_STORAGE_URI`` is set (services/api_limits.py), so every worker and
instance shares one count with nothing more to run.

Imported only when the API is first used: ``limits`` costs each worker about 1.5 MB, which a
clinic that never calls the API should not pay.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from limits.storage import Storage
from sqlalchemy import case, delete, select
from sqlalchemy.exc import SQLAlchemyError

from models import ApiRateCounter, db
from models.types import utcnow
from services import upsert


class DatabaseStorage(Storage):
    """A ``limits`` storage in the app's own database (table ``api_rate_counters``): one row
    per token and window length, incremented by one atomic INSERT ... ON CONFLICT that also
    starts a new window once the old one has expired.

    Each call is its own short transaction on its own connection: the count must stand
    whatever the request does next, and must not commit the request's own work.
    """

    STORAGE_SCHEME = ["clinic-database"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **_: object):
        super().__init__(uri, wrap_exceptions=wrap_exceptions)

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = utcnow()
        ends = now + timedelta(seconds=expiry)
        table = ApiRateCounter.__table__
        expired = table.c.expires_at <= now
        statement = (
            upsert.insert(table)
            .values(key=key, hits=amount, expires_at=ends)
            .on_conflict_do_update(
                index_elements=[table.c.key],
                set_={
                    "hits": case((expired, amount), else_=table.c.hits + amount),
                    "expires_at": case((expired, ends), else_=table.c.expires_at),
                },
            )
            .returning(table.c.hits)
        )
        with db.engine.begin() as connection:
            return int(connection.execute(statement).scalar_one())

    def _row(self, key: str) -> tuple[int, datetime] | None:
        with db.engine.connect() as connection:
            row = connection.execute(
                select(ApiRateCounter.hits, ApiRateCounter.expires_at).where(
                    ApiRateCounter.key == key
                )
            ).first()
        if row is None:
            return None
        hits, ends = row
        return (0, ends) if ends <= utcnow() else (hits, ends)

    def get(self, key: str) -> int:
        row = self._row(key)
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return row[1].timestamp() if row and row[0] else time.time()

    def check(self) -> bool:
        try:
            with db.engine.connect() as connection:
                connection.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with db.engine.begin() as connection:
            return connection.execute(delete(ApiRateCounter)).rowcount

    def clear(self, key: str) -> None:
        with db.engine.begin() as connection:
            connection.execute(delete(ApiRateCounter).where(ApiRateCounter.key == key))
