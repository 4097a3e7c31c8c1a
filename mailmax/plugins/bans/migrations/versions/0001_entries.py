"""The bans table.

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
    """Create bans_entries."""
    op.create_table(
        "bans_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("pattern", sa.String(320), nullable=False),
        sa.Column("scope", sa.String(10), nullable=False),
        sa.Column("scope_value", sa.String(255), nullable=False, server_default=""),
        sa.Column("cause", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False, server_default=""),
        sa.Column("added", sa.Float, nullable=False),
        sa.Column("expires", sa.Float, nullable=True),
        sa.UniqueConstraint("kind", "pattern", "scope", "scope_value", name="uq_bans_entries"),
    )
    op.create_index("ix_bans_entries_expires", "bans_entries", ["expires"])


def downgrade() -> None:
    """Drop bans_entries."""
    op.drop_table("bans_entries")
