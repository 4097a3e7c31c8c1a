"""The access rules table.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create access_rules."""
    op.create_table(
        "access_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("listener", sa.String(64), nullable=False, server_default=""),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("pattern", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("flags", sa.String(200), nullable=False, server_default=""),
        sa.Column("comment", sa.String(500), nullable=False, server_default=""),
        sa.UniqueConstraint("listener", "pattern", name="uq_access_rules"),
    )


def downgrade() -> None:
    """Drop access_rules."""
    op.drop_table("access_rules")
