"""The plugins' key-value store.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table of the plugins' key-value entries."""
    op.create_table(
        "plugin_kv",
        sa.Column("plugin", sa.String(100), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("expires", sa.Float, nullable=True),
        sa.Column("updated", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("plugin", "key", name="pk_plugin_kv"),
    )
    op.create_index("ix_plugin_kv_expires", "plugin_kv", ["expires"])


def downgrade() -> None:
    """Drop the plugins' key-value entries."""
    op.drop_table("plugin_kv")
