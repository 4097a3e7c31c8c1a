"""Clustered domains: each user's home node and the "moving" mark of ``mailmax user move``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``users.home_node`` (empty: the domain's home node) and ``users.moving``.

    Plain ``ADD COLUMN`` (no table copy): rebuilding ``users`` on SQLite would cascade-delete
    the rows that refer to it.
    """
    op.add_column(
        "users", sa.Column("home_node", sa.String(255), nullable=False, server_default="")
    )
    op.add_column(
        "users", sa.Column("moving", sa.Boolean, nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    """Drop the two columns."""
    with op.batch_alter_table("users") as batch:
        batch.drop_column("moving")
        batch.drop_column("home_node")
