"""The antivirus switch for every user of a domain (the CLI, the API, the web admin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailmax.core.services.actor import Actor, audit
from mailmax.core.services.domains import get_domain

if TYPE_CHECKING:
    from mailmax.core.directory.sql import SQLDirectory

PLUGIN = "antivirus"


def switch_users(directory: SQLDirectory, actor: Actor, domain: str, on: bool) -> dict[str, Any]:
    """Switch scanning on or off for each user of ``domain`` (each user's own switch, their
    other antivirus settings kept); what was done, with a ``message``."""
    name = get_domain(directory, actor, domain).name
    users = directory.list_users(name)
    overrides = directory.get_plugin_overrides(PLUGIN)
    for user in users:
        _, settings = overrides.get(("user", user.address), (None, {}))
        directory.set_plugin_override(PLUGIN, "user", user.address, enabled=on, settings=settings)
    audit(directory, actor, "antivirus.users", name, enabled=on, users=len(users))
    return {
        "message": f"antivirus switched {'on' if on else 'off'} for {len(users)} users of {name}",
        "domain": name,
        "enabled": on,
        "users": len(users),
    }
