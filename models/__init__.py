"""Database objects: ``db``, the declarative ``Base`` and one module per aggregate.

Importing this package imports every model so that Alembic and ``db.create_all`` see them.
"""

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# Objects stay readable after commit: a request that commits then renders should not pay a
# second SELECT per row it already holds.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})

from models.api import ApiRateCounter, ApiToken  # noqa: E402
from models.audit import AuditEvent, AuditPurgePermit  # noqa: E402
from models.codes import OneTimeCode, PasswordResetToken  # noqa: E402
from models.devices import RememberedDevice  # noqa: E402
from models.factors import MfaFactor, MfaSetup, RecoveryCode  # noqa: E402
from models.locations import TrustedLocation  # noqa: E402
from models.policy import ClinicPolicy  # noqa: E402
from models.rollout import RolloutNotice  # noqa: E402
from models.sessions import UserSession  # noqa: E402
from models.throttle import SignInThrottle  # noqa: E402
from models.user import DEFAULT_ROLES, Role, User  # noqa: E402

__all__ = [
    "DEFAULT_ROLES",
    "ApiRateCounter",
    "ApiToken",
    "AuditEvent",
    "AuditPurgePermit",
    "Base",
    "ClinicPolicy",
    "MfaFactor",
    "MfaSetup",
    "OneTimeCode",
    "PasswordResetToken",
    "RecoveryCode",
    "RememberedDevice",
    "Role",
    "RolloutNotice",
    "SignInThrottle",
    "TrustedLocation",
    "User",
    "UserSession",
    "db",
]
