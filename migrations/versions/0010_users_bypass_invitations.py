"""staff management: invitations (no password until chosen), emailed links with a purpose,
one-time bypass

Revision ID: 0010_users_bypass_invitations
Revises: 0009_api_users_tokens
Create Date: 2026-11-24 04:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_users_bypass_invitations"
down_revision = "0009_api_users_tokens"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("password_hash", existing_type=sa.String(length=255), nullable=True)
        batch_op.add_column(sa.Column("mfa_bypass_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("mfa_bypass_by_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_users_mfa_bypass_by_id_users"),
            "users",
            ["mfa_bypass_by_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("password_reset_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "purpose", sa.String(length=16), nullable=False, server_default="password_reset"
            )
        )


def downgrade():
    with op.batch_alter_table("password_reset_tokens", schema=None) as batch_op:
        batch_op.drop_column("purpose")
    # Invited people who never chose a password cannot be kept without one.
    op.execute("DELETE FROM users WHERE password_hash IS NULL")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_users_mfa_bypass_by_id_users"), type_="foreignkey")
        batch_op.drop_column("mfa_bypass_by_id")
        batch_op.drop_column("mfa_bypass_until")
        batch_op.alter_column("password_hash", existing_type=sa.String(length=255), nullable=False)
