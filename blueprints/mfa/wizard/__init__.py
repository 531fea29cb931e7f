"""The setup wizard (WIZ-1 to WIZ-5): choose → scan or confirm → code → recovery codes →
remember → done.

Each step has its own URL and works as a plain form; htmx swaps the step into ``#wizard`` and
keeps the URL in step. By concern: ``flow`` (who may be here, the step table, rendering, the
stage guard), ``shared_steps`` (choose, decline, recovery codes, remember, done, and what
follows a proved factor), ``app_steps`` (authenticator app), ``contact_steps`` (email, SMS).

Who may use it: a pending sign-in that must (or may) enrol, or a signed-in user adding or
replacing a factor, who must have proved who they are in the last 10 minutes (ACC-3).
"""

from blueprints.mfa.wizard import app_steps, contact_steps, shared_steps  # noqa: F401
