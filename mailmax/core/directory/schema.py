"""The directory's tables (SQLAlchemy Core), as of the newest migration.

Names (domains, domain aliases, user and alias names) are stored in lower case, so the unique
constraints are case-insensitive. Times are Unix seconds (floats). Deleting a domain cascades
to its aliases, users and their records; deleting a user cascades to its forward, overrides and
login records. The migrations in ``migrations/versions`` build exactly these tables; a test
compares the two.
"""

from __future__ import annotations

import sqlalchemy as sa

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)


def _times() -> list[sa.Column]:
    return [
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    ]


domains = sa.Table(
    "domains",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(253), nullable=False, unique=True),
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
    # --- version 0005
    sa.Column("user_source", sa.String(70), nullable=False, server_default=""),
)

domain_aliases = sa.Table(
    "domain_aliases",
    metadata,
    sa.Column("name", sa.String(253), primary_key=True),
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("domains.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("created", sa.Float, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "domain_id", sa.Integer, sa.ForeignKey("domains.id", ondelete="CASCADE"), nullable=False
    ),
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
    # --- version 0006
    sa.Column("home_node", sa.String(255), nullable=False, server_default=""),
    sa.Column("moving", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("domain_id", "name"),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "domain_id", sa.Integer, sa.ForeignKey("domains.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("name", sa.String(64), nullable=False),
    *_times(),
    sa.UniqueConstraint("domain_id", "name"),
)

alias_targets = sa.Table(
    "alias_targets",
    metadata,
    sa.Column(
        "alias_id", sa.Integer, sa.ForeignKey("aliases.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("target", sa.String(320), nullable=False),
)

# --- version 0002 ---------------------------------------------------------------------------

forwards = sa.Table(
    "forwards",
    metadata,
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("keep_local_copy", sa.Boolean, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)

forward_targets = sa.Table(
    "forward_targets",
    metadata,
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("forwards.user_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("target", sa.String(320), nullable=False),
)

plugin_overrides = sa.Table(
    "plugin_overrides",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("plugin", sa.String(100), nullable=False),
    sa.Column(
        "domain_id", sa.Integer, sa.ForeignKey("domains.id", ondelete="CASCADE"), nullable=True
    ),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    sa.Column("enabled", sa.Boolean, nullable=True),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.CheckConstraint("(domain_id IS NULL) <> (user_id IS NULL)", name="one_scope"),
)
sa.Index(
    "uq_plugin_overrides_domain",
    plugin_overrides.c.plugin,
    plugin_overrides.c.domain_id,
    unique=True,
    sqlite_where=plugin_overrides.c.domain_id.is_not(None),
    postgresql_where=plugin_overrides.c.domain_id.is_not(None),
)
sa.Index(
    "uq_plugin_overrides_user",
    plugin_overrides.c.plugin,
    plugin_overrides.c.user_id,
    unique=True,
    sqlite_where=plugin_overrides.c.user_id.is_not(None),
    postgresql_where=plugin_overrides.c.user_id.is_not(None),
)

logins = sa.Table(
    "logins",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("service", sa.String(16), nullable=False),
    sa.Column("ip", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)
sa.Index("ix_logins_user_id_at", logins.c.user_id, logins.c.at)

plugin_kv = sa.Table(
    "plugin_kv",
    metadata,
    sa.Column("plugin", sa.String(100), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("expires", sa.Float, nullable=True),
    sa.Column("updated", sa.Float, nullable=False),
)
sa.Index("ix_plugin_kv_expires", plugin_kv.c.expires)

# --- version 0007 ---------------------------------------------------------------------------

admins = sa.Table(
    "admins",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    sa.Column("system", sa.Boolean, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)

admin_domains = sa.Table(
    "admin_domains",
    metadata,
    sa.Column(
        "admin_id", sa.Integer, sa.ForeignKey("admins.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "domain_id", sa.Integer, sa.ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True
    ),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column(
        "admin_id", sa.Integer, sa.ForeignKey("admins.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("secret_hash", sa.String(128), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("expires", sa.Float, nullable=True),
    sa.Column("last_used", sa.Float, nullable=True),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(320), nullable=False),
    sa.Column("origin", sa.String(100), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target", sa.String(400), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
)
sa.Index("ix_audit_log_at", audit_log.c.at)

# --- version 0008 ---------------------------------------------------------------------------

admin_sessions = sa.Table(
    "admin_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the session token
    sa.Column(
        "admin_id", sa.Integer, sa.ForeignKey("admins.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
    # version 0009: for an LDAP-backed administrator, an HMAC (keyed with the session token) of
    # the account's password-change marker at sign-in, and when it was last compared
    sa.Column("password_mark", sa.String(64), nullable=True),
    sa.Column("mark_checked", sa.Float, nullable=True),
)
sa.Index("ix_admin_sessions_expires", admin_sessions.c.expires)
sa.Index("ix_admin_sessions_admin_id", admin_sessions.c.admin_id)
