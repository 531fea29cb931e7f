"""policy: whether Administrators may remember a device (off by default)

Revision ID: 0004_admins_may_remember
Revises: 0003_email_sms_codes
Create Date: 2026-11-24 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_admins_may_remember"
down_revision = "0003_email_sms_codes"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("clinic_policy", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "admins_may_remember", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade():
    with op.batch_alter_table("clinic_policy", schema=None) as batch_op:
        batch_op.drop_column("admins_may_remember")
