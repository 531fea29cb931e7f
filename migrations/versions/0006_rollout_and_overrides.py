"""rollout by role with go-live dates, per-user override, same-location rule, notices

Revision ID: 0006_rollout_and_overrides
Revises: 0005_one_factor_per_kind
Create Date: 2026-11-24 03:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_rollout_and_overrides"
down_revision = "0005_one_factor_per_kind"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("roles", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mfa_mode", sa.String(length=8), nullable=False, server_default="default")
        )
        batch_op.add_column(sa.Column("mfa_required_from", sa.Date(), nullable=True))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mfa_override", sa.String(length=8), nullable=False, server_default="default")
        )
        batch_op.add_column(sa.Column("same_location", sa.Boolean(), nullable=True))
    with op.batch_alter_table("clinic_policy", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("same_location", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("same_location_days", sa.Integer(), nullable=False, server_default="30")
        )
    op.create_table(
        "trusted_locations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_trusted_locations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trusted_locations")),
        sa.UniqueConstraint("user_id", "ip", name=op.f("uq_trusted_locations_user_id")),
    )
    op.create_table(
        "rollout_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.Column("go_live", sa.Date(), nullable=False),
        sa.Column("days_before", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_rollout_notices_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["role_id"],
            ["roles.id"],
            name=op.f("fk_rollout_notices_role_id_roles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_notices")),
        sa.UniqueConstraint(
            "user_id", "role_id", "go_live", "days_before", name=op.f("uq_rollout_notices_user_id")
        ),
    )


def downgrade():
    op.drop_table("rollout_notices")
    op.drop_table("trusted_locations")
    with op.batch_alter_table("clinic_policy", schema=None) as batch_op:
        batch_op.drop_column("same_location_days")
        batch_op.drop_column("same_location")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("same_location")
        batch_op.drop_column("mfa_override")
    with op.batch_alter_table("roles", schema=None) as batch_op:
        batch_op.drop_column("mfa_required_from")
        batch_op.drop_column("mfa_mode")
