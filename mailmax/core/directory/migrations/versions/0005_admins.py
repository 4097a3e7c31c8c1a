"""Administrators, their domains, API tokens and the audit log.

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
    """Create the administrator, token and audit tables."""
    op.create_table(
        "admins",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("system", sa.Boolean, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admins"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_admins_user_id_users", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("user_id", name="uq_admins_user_id"),
    )
    op.create_table(
        "admin_domains",
        sa.Column("admin_id", sa.Integer, nullable=False),
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("admin_id", "domain_id", name="pk_admin_domains"),
        sa.ForeignKeyConstraint(
            ["admin_id"], ["admins.id"], name="fk_admin_domains_admin_id_admins",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domains.id"], name="fk_admin_domains_domain_id_domains",
            ondelete="CASCADE",
        ),
    )  # fmt: skip
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("admin_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("secret_hash", sa.String(128), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("expires", sa.Float, nullable=True),
        sa.Column("last_used", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.ForeignKeyConstraint(
            ["admin_id"], ["admins.id"], name="fk_api_tokens_admin_id_admins", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("origin", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target", sa.String(400), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    """Drop the administrator, token and audit tables."""
    op.drop_table("audit_log")
    op.drop_table("api_tokens")
    op.drop_table("admin_domains")
    op.drop_table("admins")
