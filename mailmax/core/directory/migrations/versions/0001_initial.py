"""Domains, domain aliases, users and user aliases.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _times() -> list[sa.Column]:
    return [
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    ]


def upgrade() -> None:
    """Create the first tables."""
    op.create_table(
        "domains",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("mail_dir", sa.String(4096), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("delivery_host", sa.String(255), nullable=False),
        sa.Column("backup_priority", sa.Integer, nullable=False),
        sa.Column("home_node", sa.String(255), nullable=False),
        sa.Column("default_box_mb", sa.Integer, nullable=False),
        sa.Column("max_users", sa.Integer, nullable=False),
        sa.Column("session_send_mb", sa.Integer, nullable=False),
        sa.Column("session_send_messages", sa.Integer, nullable=False),
        sa.Column("max_message_size", sa.BigInteger, nullable=False),
        sa.Column("catch_all", sa.String(64), nullable=False),
        sa.Column("monitor", sa.String(64), nullable=False),
        sa.Column("blank_password", sa.String(16), nullable=False),
        sa.Column("over_limit_notice", sa.String(16), nullable=False),
        sa.Column("over_limit_threshold", sa.Integer, nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("id", name="pk_domains"),
        sa.UniqueConstraint("name", name="uq_domains_name"),
    )
    op.create_table(
        "domain_aliases",
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_domain_aliases"),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            ondelete="CASCADE",
            name="fk_domain_aliases_domain_id_domains",
        ),
    )
    op.create_index("ix_domain_aliases_domain_id", "domain_aliases", ["domain_id"])
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("first_name", sa.String(255), nullable=False),
        sa.Column("last_name", sa.String(255), nullable=False),
        sa.Column("account_type", sa.String(16), nullable=False),
        sa.Column("smtp_auth_disabled", sa.Boolean, nullable=False),
        sa.Column("disk_limit_mb", sa.Integer, nullable=False),
        sa.Column("daily_send_messages", sa.Integer, nullable=False),
        sa.Column("daily_send_mb", sa.Integer, nullable=False),
        sa.Column("daily_limits_enabled", sa.Boolean, nullable=False),
        sa.Column("max_message_size", sa.BigInteger, nullable=False),
        sa.Column("virus_check", sa.Boolean, nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("password_clear", sa.String(1024), nullable=True),
        sa.Column("keep_clear", sa.Boolean, nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domains.id"], ondelete="CASCADE", name="fk_users_domain_id_domains"
        ),
        sa.UniqueConstraint("domain_id", "name", name="uq_users_domain_id_name"),
    )
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("id", name="pk_aliases"),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domains.id"], ondelete="CASCADE", name="fk_aliases_domain_id_domains"
        ),
        sa.UniqueConstraint("domain_id", "name", name="uq_aliases_domain_id_name"),
    )
    op.create_table(
        "alias_targets",
        sa.Column("alias_id", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("target", sa.String(320), nullable=False),
        sa.PrimaryKeyConstraint("alias_id", "position", name="pk_alias_targets"),
        sa.ForeignKeyConstraint(
            ["alias_id"],
            ["aliases.id"],
            ondelete="CASCADE",
            name="fk_alias_targets_alias_id_aliases",
        ),
    )


def downgrade() -> None:
    """Drop the first tables (and everything in them)."""
    for table in ("alias_targets", "aliases", "users", "domain_aliases", "domains"):
        op.drop_table(table)
