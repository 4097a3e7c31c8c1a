"""Reports get a label.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add tally_reports.label."""
    with op.batch_alter_table("tally_reports") as batch:
        batch.add_column(sa.Column("label", sa.String(100), nullable=False, server_default=""))


def downgrade() -> None:
    """Drop tally_reports.label."""
    with op.batch_alter_table("tally_reports") as batch:
        batch.drop_column("label")
