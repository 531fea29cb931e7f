"""mfa_setups.adding: a setup begun by a signed-in person from their security page

Revision ID: 0008_setup_adding
Revises: 0006_rollout_and_overrides
Create Date: 2026-11-25 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_setup_adding"
down_revision = "0006_rollout_and_overrides"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("mfa_setups", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("adding", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade():
    with op.batch_alter_table("mfa_setups", schema=None) as batch_op:
        batch_op.drop_column("adding")
