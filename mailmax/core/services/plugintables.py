"""The shared base of the services that manage a plugin's own tables in the directory.

Access rules, bans and rules are kept in tables their plugin declares; an administrator may
change them before the plugin ever ran, so each request first brings the tables up to date.
"""

from __future__ import annotations

import importlib
import ipaddress
from typing import TYPE_CHECKING, Any, ClassVar

from mailmax.core.directory.errors import DirectoryError, FieldError

if TYPE_CHECKING:
    from types import ModuleType

    from mailmax.core.config import Settings
    from mailmax.core.directory.sql import SQLDirectory
    from mailmax.core.services.actor import Actor


class PluginTableAdmin:
    """Administration of the plugin ``MODULE``'s tables for ``actor`` on the system of
    ``settings`` and ``directory``."""

    #: The plugin's module, imported only when a request is handled.
    MODULE: ClassVar[str]

    def __init__(self, settings: Settings, directory: SQLDirectory, actor: Actor) -> None:
        self.settings = settings
        self.directory = directory
        self.actor = actor

    @classmethod
    def plugin(cls) -> ModuleType:
        """The plugin's module."""
        return importlib.import_module(cls.MODULE)

    def _run(self, function: Any, *args: Any, write: bool = False) -> Any:
        """``function(connection, *args)`` in one transaction, the plugin's tables migrated."""
        from mailmax.core.directory.engine import transaction
        from mailmax.core.pluginhost.storage import migrate_tables

        engine = self.directory.engine
        plugin = self.plugin()
        migrate_tables(engine, plugin.NAME, plugin, plugin.TABLES)
        with transaction(engine, write=write) as connection:
            return function(connection, *args)

    def plugin_enabled(self) -> bool:
        """Whether the plugin is on system-wide (else what it keeps holds only where it is on)."""
        from mailmax.core.pluginhost.reload import enabled_names

        return self.plugin().NAME in enabled_names(self.settings)

    def listening_address(self, text: str, refused: type[DirectoryError], consequence: str) -> str:
        """The listening address ``text``, normalized; ``refused`` naming the configured ones
        (after ``consequence``, what would happen otherwise) when no listener has it."""
        try:
            address = str(ipaddress.ip_address(text.strip()))
        except ValueError:
            raise FieldError("listener", f"{{field}} {text!r} is not an IP address") from None
        addresses = sorted({item.address for item in self.settings.listeners})
        if address not in addresses:
            raise refused(
                f"no listener on {address}: {consequence}; "
                f"the listening addresses are {', '.join(addresses) or '(none)'}"
            )
        return address
