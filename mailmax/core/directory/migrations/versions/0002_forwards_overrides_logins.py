"""Forwards, per-domain and per-user plugin overrides, login tracking.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the forwarding, plugin override and login tables."""
    op.create_table(
        "forwards",
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("keep_local_copy", sa.Boolean, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_forwards"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_forwards_user_id_users"
        ),
    )
    op.create_table(
        "forward_targets",
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("target", sa.String(320), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "position", name="pk_forward_targets"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["forwards.user_id"],
            ondelete="CASCADE",
            name="fk_forward_targets_user_id_forwards",
        ),
    )
    op.create_table(
        "plugin_overrides",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("plugin", sa.String(100), nullable=False),
        sa.Column("domain_id", sa.Integer, nullable=True),
        sa.Column("user_id", sa.Integer, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=True),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_plugin_overrides"),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            ondelete="CASCADE",
            name="fk_plugin_overrides_domain_id_domains",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_plugin_overrides_user_id_users"
        ),
        sa.CheckConstraint(
            "(domain_id IS NULL) <> (user_id IS NULL)", name="ck_plugin_overrides_one_scope"
        ),
    )
    domain_set = sa.text("domain_id IS NOT NULL")
    user_set = sa.text("user_id IS NOT NULL")
    op.create_index(
        "uq_plugin_overrides_domain",
        "plugin_overrides",
        ["plugin", "domain_id"],
        unique=True,
        sqlite_where=domain_set,
        postgresql_where=domain_set,
    )
    op.create_index(
        "uq_plugin_overrides_user",
        "plugin_overrides",
        ["plugin", "user_id"],
        unique=True,
        sqlite_where=user_set,
        postgresql_where=user_set,
    )
    op.create_table(
        "logins",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("service", sa.String(16), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_logins"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_logins_user_id_users"
        ),
    )
    op.create_index("ix_logins_user_id_at", "logins", ["user_id", "at"])


def downgrade() -> None:
    """Drop the forwarding, plugin override and login tables."""
    for table in ("logins", "plugin_overrides", "forward_targets", "forwards"):
        op.drop_table(table)
