"""Administrators' sessions remember a keyed fingerprint of their LDAP password.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the fingerprint and when it was last checked."""
    with op.batch_alter_table("admin_sessions") as batch:
        batch.add_column(sa.Column("password_mark", sa.String(64), nullable=True))
        batch.add_column(sa.Column("mark_checked", sa.Float, nullable=True))


def downgrade() -> None:
    """Drop the fingerprint columns."""
    with op.batch_alter_table("admin_sessions") as batch:
        batch.drop_column("mark_checked")
        batch.drop_column("password_mark")
