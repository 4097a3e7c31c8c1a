"""The warning of ``mailmax domain`` and ``mailmax user`` when sending limits are set while the
plugin that enforces them is not enabled system-wide."""

from __future__ import annotations

from typing import Any

from mailmax.core.cli.context import app
from mailmax.core.cli.output import warn

#: The plugin that enforces the domains' and users' sending limits.
PLUGIN = "limits"


def warn_if_not_enforced(fields: dict[str, Any], limit_fields: tuple[str, ...]) -> None:
    """Warn when ``fields`` set a non-zero sending limit and the plugin is off system-wide."""
    from mailmax.core.pluginhost.reload import enabled_names

    if not any(fields.get(name) for name in limit_fields):
        return
    if PLUGIN not in enabled_names(app().settings()):
        warn(
            f"the {PLUGIN} plugin is not enabled system-wide, so sending limits hold only where"
            f" it is switched on; enable it with `mailmax plugin enable {PLUGIN}`"
        )
