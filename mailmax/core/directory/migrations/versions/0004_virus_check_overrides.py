"""A user's virus_check flag becomes the antivirus plugin's switch for that user.

Every user was stored with ``virus_check = true`` (the default), so only the users whose flag
is off get an override (``antivirus`` off for the user); the others keep inheriting the
domain's and the system's switch.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Switch antivirus off for each user stored with virus_check off (no override yet)."""
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("virus_check", sa.Boolean))
    overrides = sa.table(
        "plugin_overrides",
        sa.column("plugin", sa.String),
        sa.column("user_id", sa.Integer),
        sa.column("domain_id", sa.Integer),
        sa.column("enabled", sa.Boolean),
        sa.column("settings", sa.JSON),
        sa.column("updated", sa.Float),
    )
    bind = op.get_bind()
    have = {
        row.user_id
        for row in bind.execute(
            sa.select(overrides.c.user_id).where(overrides.c.plugin == "antivirus")
        )
    }
    rows = [
        {"plugin": "antivirus", "user_id": row.id, "domain_id": None, "enabled": False,
         "settings": {}, "updated": time.time()}
        for row in bind.execute(sa.select(users.c.id).where(users.c.virus_check.is_(False)))
        if row.id not in have
    ]  # fmt: skip
    if rows:
        op.bulk_insert(overrides, rows)


def downgrade() -> None:
    """Nothing to undo: the overrides stay (the flag column was never dropped)."""
