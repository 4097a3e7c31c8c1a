"""Administrators' session tokens (from a password log-in), shared by every node.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the session table."""
    op.create_table(
        "admin_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("admin_id", sa.Integer, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_sessions"),
        sa.ForeignKeyConstraint(
            ["admin_id"], ["admins.id"], name="fk_admin_sessions_admin_id_admins",
            ondelete="CASCADE",
        ),
    )  # fmt: skip
    op.create_index("ix_admin_sessions_expires", "admin_sessions", ["expires"])
    op.create_index("ix_admin_sessions_admin_id", "admin_sessions", ["admin_id"])


def downgrade() -> None:
    """Drop the session table."""
    op.drop_table("admin_sessions")
