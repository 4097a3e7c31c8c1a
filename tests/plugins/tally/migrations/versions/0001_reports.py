"""The reports table.

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
    """Create tally_reports."""
    op.create_table(
        "tally_reports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("messages", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    """Drop tally_reports."""
    op.drop_table("tally_reports")
