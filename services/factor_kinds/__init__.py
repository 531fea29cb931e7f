"""The factor registry: every kind of second factor behind one interface (base.py).

The challenge, the wizard, the home page, the emails and the recovery-code files ask this
registry for a kind's words and checks; no view or template branches on a factor's kind.
Adding a kind (passkeys) is a new module beside these and a line in ``_KINDS``.
"""

from __future__ import annotations

from services.factor_kinds import authenticator_app, email_code, recovery_code, sms_code
from services.factor_kinds.base import CodeSendingKind, FactorKind

__all__ = ["RECOVERY", "CodeSendingKind", "FactorKind", "enrollable", "get", "sending_codes"]

# Strongest first: the order the wizard offers them in.
_KINDS: tuple[FactorKind, ...] = (
    authenticator_app.KIND,
    email_code.KIND,
    sms_code.KIND,
)
_BY_NAME: dict[str, FactorKind] = {kind.name: kind for kind in _KINDS}
RECOVERY = recovery_code.KIND


def get(name: str) -> FactorKind:
    """The kind called ``name``; KeyError for a name no kind has."""
    if name == RECOVERY.name:
        return RECOVERY
    return _BY_NAME[name]


def enrollable() -> tuple[FactorKind, ...]:
    """Every kind a person can set up, strongest first."""
    return _KINDS


def sending_codes() -> tuple[CodeSendingKind, ...]:
    return tuple(kind for kind in _KINDS if isinstance(kind, CodeSendingKind))
