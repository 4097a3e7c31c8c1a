"""A user's auto-responder, the autoreply plugin's settings for the user (the CLI, the API, the
web admin). A running server sees a change within ``[server] directory_cache_seconds``."""

from __future__ import annotations

from typing import Any

from mailmax.core.hooks import PluginError
from mailmax.core.pluginhost.scopes import ScopeStore
from mailmax.core.services.plugins import PluginAdmin, PluginRefused

PLUGIN = "autoreply"


def report(admin: PluginAdmin, user: str) -> tuple[str, dict[str, Any]]:
    """The user's address and the plugin's effective switch and settings for them."""
    _, canonical, scope = admin.scope(None, user)
    plugin = admin.load(PLUGIN)
    try:
        return canonical, ScopeStore(admin.source()).explain(plugin, scope)
    except PluginError as exc:
        raise PluginRefused(str(exc)) from None


def show(admin: PluginAdmin, user: str) -> dict[str, Any]:
    """Whether the user's auto-responder answers, the plugin's switch and the settings."""
    canonical, found = report(admin, user)
    values = {key: item["value"] for key, item in found["settings"].items()}
    answering = bool(found["enabled"] and values.get("active"))
    return {"user": canonical, "answering": answering, "plugin_enabled": found["enabled"],
            "settings": values}  # fmt: skip


def switch_on(admin: PluginAdmin, user: str, changes: dict[str, Any]) -> tuple[str, dict]:
    """Switch the user's auto-responder on with ``changes`` (others stay); refused, nothing
    written, when the plugin is off for the user or a reply would say nothing."""
    canonical, found = report(admin, user)
    if not found["enabled"]:
        raise PluginRefused(
            f"the {PLUGIN} plugin is switched off for {canonical} (from "
            f"{found['enabled_from']}), so no reply would be sent; switch it on with "
            f"`mailmax plugin enable {PLUGIN}` (add --user or --domain for one user or "
            "domain); nothing was changed"
        )
    changes = {key: value for key, value in changes.items() if value is not None}
    current = {key: item["value"] for key, item in found["settings"].items()}
    if not (changes.get("text") or changes.get("subject") or current.get("text")):
        raise PluginRefused(
            "give --text (or --text-file) or --subject: a reply needs something to say"
        )
    return admin.change_settings(PLUGIN, None, canonical, {"active": True, **changes})


def switch_off(admin: PluginAdmin, user: str) -> tuple[str, dict]:
    """Switch the user's auto-responder off (its text and settings are kept)."""
    canonical, _ = report(admin, user)
    return admin.change_settings(PLUGIN, None, canonical, {"active": False})
