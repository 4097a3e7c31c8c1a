"""The rules table.

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
    """Create rules_entries."""
    op.create_table(
        "rules_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("scope", sa.String(10), nullable=False),
        sa.Column("scope_value", sa.String(320), nullable=False, server_default=""),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("conditions", sa.Text, nullable=False),
        sa.Column("actions", sa.Text, nullable=False),
        sa.Column("changed", sa.Float, nullable=False),
        sa.UniqueConstraint("scope", "scope_value", "name", name="uq_rules_entries"),
    )
    op.create_index("ix_rules_entries_list", "rules_entries", ["scope", "scope_value"])


def downgrade() -> None:
    """Drop rules_entries."""
    op.drop_table("rules_entries")
