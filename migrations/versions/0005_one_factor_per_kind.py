"""one factor per kind, profile number by request, fresh authentication time

Revision ID: 0005_one_factor_per_kind
Revises: 0004_admins_may_remember
Create Date: 2026-11-24 02:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_one_factor_per_kind"
down_revision = "0004_admins_may_remember"
branch_labels = None
depends_on = None


def upgrade():
    # Earlier versions could enrol a kind twice; keep the newest of each (user, kind).
    op.execute(
        "DELETE FROM mfa_factors WHERE id NOT IN ("
        " SELECT MAX(id) FROM mfa_factors GROUP BY user_id, kind)"
    )
    with op.batch_alter_table("mfa_factors", schema=None) as batch_op:
        batch_op.drop_index("ix_mfa_factors_user_kind")
        batch_op.create_index("ix_mfa_factors_user_kind", ["user_id", "kind"], unique=True)
    with op.batch_alter_table("mfa_setups", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("target_to_profile", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fresh_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.drop_column("fresh_at")
    with op.batch_alter_table("mfa_setups", schema=None) as batch_op:
        batch_op.drop_column("target_to_profile")
    with op.batch_alter_table("mfa_factors", schema=None) as batch_op:
        batch_op.drop_index("ix_mfa_factors_user_kind")
        batch_op.create_index("ix_mfa_factors_user_kind", ["user_id", "kind"], unique=False)
