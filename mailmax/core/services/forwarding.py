"""A user's forwarding: the forwarding plugin's switch and settings at the user's scope
(the same as ``mailmax plugin set|enable|disable forwarding --user ADDRESS``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailmax.core.services.actor import Actor
from mailmax.core.services.plugins import PluginAdmin
from mailmax.core.services.users import get_user

if TYPE_CHECKING:
    from mailmax.core.config import Settings
    from mailmax.core.directory.sql import SQLDirectory

PLUGIN = "forwarding"


def get_forward(
    settings: Settings, directory: SQLDirectory, actor: Actor, address: str
) -> dict[str, Any]:
    """The forwarding in force for ``address``: enabled, targets, keep_local_copy."""
    user = get_user(directory, actor, address)
    report = PluginAdmin(settings, directory, actor).show(PLUGIN, None, user.address)
    values = {key: item["value"] for key, item in report["settings"].items()}
    targets = list(values.get("targets") or [])
    return {
        "address": user.address,
        # The plugin runs for every user by default; mail is forwarded only with targets.
        "enabled": bool(report["enabled"]) and bool(targets),
        "targets": targets,
        "keep_local_copy": bool(values.get("keep_local_copy", True)),
    }


def set_forward(
    settings: Settings,
    directory: SQLDirectory,
    actor: Actor,
    address: str,
    targets: list[str],
    *,
    enabled: bool = True,
    keep_local_copy: bool = True,
) -> dict[str, Any]:
    """Forward the mail of ``address`` to ``targets`` (full addresses) and switch it."""
    user = get_user(directory, actor, address)
    plugins = PluginAdmin(settings, directory, actor)
    changes = {"targets": list(targets), "keep_local_copy": keep_local_copy}
    plugins.change_settings(PLUGIN, None, user.address, changes)
    plugins.switch(PLUGIN, None, user.address, enabled)
    return get_forward(settings, directory, actor, user.address)


def delete_forward(settings: Settings, directory: SQLDirectory, actor: Actor, address: str) -> None:
    """Stop forwarding the mail of ``address`` (its forwarding settings are removed)."""
    user = get_user(directory, actor, address)
    plugins = PluginAdmin(settings, directory, actor)
    plugins.change_settings(PLUGIN, None, user.address, {"targets": None, "keep_local_copy": None})
    plugins.switch(PLUGIN, None, user.address, False)
