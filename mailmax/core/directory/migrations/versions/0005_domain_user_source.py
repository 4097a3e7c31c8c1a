"""Where a domain's users come from: the SQL directory (empty) or an LDAP source (``ldap:NAME``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``domains.user_source``; every existing domain keeps its users in SQL."""
    with op.batch_alter_table("domains") as batch:
        batch.add_column(sa.Column("user_source", sa.String(70), nullable=False, server_default=""))


def downgrade() -> None:
    """Drop ``domains.user_source``."""
    with op.batch_alter_table("domains") as batch:
        batch.drop_column("user_source")
