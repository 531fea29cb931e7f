"""Recovery code (FAC-5): ten single-use codes, for when the usual factor is out of reach.

Not a kind anyone sets up on its own: the codes come with the first factor (the wizard's
recovery step) and are checked from the challenge's "Use a recovery code instead".
"""

from __future__ import annotations

from markupsafe import Markup

from models import MfaFactor, MfaSetup, User, UserSession
from services import recovery, wrong_codes
from services.factor_kinds.base import FactorKind


class RecoveryCode(FactorKind):
    name = "recovery"
    label = "Recovery code"
    description = "One of the ten codes you saved when you set up two-step sign-in."
    switch_label = "Use a recovery code instead"
    code_source = "one of your recovery codes"
    set_up_message = "Your recovery codes are ready."
    lost_phrase = "if you have lost your recovery codes"
    wrong_code = "That recovery code did not work. Check it and try again."
    wrong_setup_code = wrong_code
    first_stage = "recovery"
    replace_label = "Make new recovery codes"
    replace_hint = "The new codes replace the old ones, which stop working at once."

    def challenge_prompt(self, user: User, factor: MfaFactor | None) -> Markup:
        return Markup(
            "Enter one of the recovery codes you saved when you set up two-step sign-in. Each "
            "code works once; we will email you when one is used."
        )

    def check_sign_in(
        self, row: UserSession, factor: MfaFactor | None, code: str | None
    ) -> wrong_codes.Passed | None:
        return recovery.use(row.user_id, code)

    def check_setup(self, setup: MfaSetup, user: User, code: str | None) -> int | None:
        return None  # made with the first factor, never set up on their own


KIND = RecoveryCode()
