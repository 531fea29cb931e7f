"""The one small interface every kind of second factor offers (services/factor_kinds).

Views and templates ask a kind for its words and its checks; none of them branches on which
kind it is. Adding a kind (passkeys) is a new module beside these and a line in the registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from markupsafe import Markup
from sqlalchemy import update

from models import MfaFactor, MfaSetup, User, UserSession, db
from models.codes import PURPOSE_SETUP
from models.types import utcnow
from services import codes, totp, wrong_codes


class FactorKind(ABC):
    """A kind of second factor: what people read about it and how its codes are checked."""

    name: ClassVar[str]  # as stored in mfa_factors.kind and the policy's allowed methods
    label: ClassVar[str]  # "Authenticator app"
    description: ClassVar[str]  # why and how, on the wizard's first step
    recommended: ClassVar[bool] = False
    sends_codes: ClassVar[bool] = False  # a code is sent for each sign-in (email, SMS)
    switch_label: ClassVar[str]  # "Use your authenticator app instead"
    code_source: ClassVar[str]  # "the code from your authenticator app"
    set_up_message: ClassVar[str]  # "Your authenticator app is set up."
    lost_phrase: ClassVar[str]  # "if you cannot use your authenticator app"
    wrong_code: ClassVar[str]  # a wrong code at sign-in
    wrong_setup_code: ClassVar[str]  # a wrong code while setting up
    first_stage: ClassVar[str]  # where a setup of this kind starts (services/enrolment.py)
    replace_label: ClassVar[str]  # the security page's button: "Move to a new phone"
    # On the first setup step when one of this kind is being replaced; {current} is where
    # codes go now, masked.
    replace_hint: ClassVar[str]

    @abstractmethod
    def challenge_prompt(self, user: User, factor: MfaFactor | None) -> Markup:
        """What the challenge asks for, e.g. "Enter the code we sent to n***@clinic"."""

    def shown_as(self, target: str | None) -> str | None:
        """Where codes go, masked for the screen; None when nothing is sent."""
        return None

    def start_setup(self, setup: MfaSetup) -> None:
        """Fill in what a new setup of this kind needs (a secret, or nothing yet)."""
        return None  # email and SMS need nothing until the address or number is confirmed

    @abstractmethod
    def check_sign_in(
        self, row: UserSession, factor: MfaFactor | None, code: str | None
    ) -> wrong_codes.Passed | None:
        """Spend ``code`` for the pending sign-in ``row`` if it is right, once only and behind
        the gate of services/wrong_codes.py (``guarded``): None otherwise."""

    @abstractmethod
    def check_setup(self, setup: MfaSetup, user: User, code: str | None) -> int | None:
        """Whether ``code`` proves the setup: the time step to store as used, 0 when steps do
        not apply, None when it does not."""

    def __repr__(self) -> str:
        return f"<FactorKind {self.name}>"


class CodeSendingKind(FactorKind):
    """Email and SMS: a code is sent to an address or number the user confirms in setup."""

    sends_codes = True
    noun: ClassVar[str]  # "email", "text message"
    target_noun: ClassVar[str]  # "email address", "mobile number"
    arrival_hint: ClassVar[str]  # after "It can take a minute to arrive"
    back_label: ClassVar[str]  # from the code step back to the address or number
    confirm_template: ClassVar[str]  # the wizard's partial that confirms the target
    confirm_button: ClassVar[str]  # "Email me a code"

    @abstractmethod
    def target_for(self, user: User, typed: str, *, current: str | None = None) -> str:
        """The address or number to confirm from what the person typed; ``current`` is where
        codes go now when this setup replaces a factor of the kind. Raises
        ``services.users.UserInputError`` with a message they can act on."""

    def mailbox(self, target: str) -> str | None:
        """The email address ``target`` is, if it is one: a changed address is told there."""
        return None

    @abstractmethod
    def deliver(self, user: User, target: str, *, purpose: str, code: str, minutes: int) -> None:
        """Send ``code``; raises ``services.mail.DeliveryError`` when it cannot go."""

    def check_sign_in(
        self, row: UserSession, factor: MfaFactor | None, code: str | None
    ) -> wrong_codes.Passed | None:
        if factor is None:
            return None
        passed = codes.spend_for_sign_in(
            row.user_id,
            target=factor.target or "",
            session_id=row.id,
            code=totp.normalise_code(code),
        )
        if passed is not None:
            # "Last used" on the security page; the app's factor records it in its own UPDATE.
            db.session.execute(
                update(MfaFactor).where(MfaFactor.id == factor.id).values(last_used_at=utcnow())
            )
        return passed

    def check_setup(self, setup: MfaSetup, user: User, code: str | None) -> int | None:
        if setup.target is None:
            return None
        ok = codes.verify(
            user.id, purpose=PURPOSE_SETUP, target=setup.target, code=totp.normalise_code(code)
        )
        return 0 if ok else None
