"""The configuration file checked, and the configuration in force (the CLI and the API)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailmax.core.config import ConfigError, load

if TYPE_CHECKING:
    from mailmax.core.config import Settings


def check(path: Path) -> dict[str, Any]:
    """The config file at ``path`` checked with its TLS files and database: ``ok``, every
    problem found, and warnings about settings that work but are less safe than they could be."""
    from mailmax.core.cli.configcmd import (
        cluster_problems,
        config_warnings,
        database_problems,
        tls_problems,
    )

    try:
        settings = load(path)
    except ConfigError as exc:
        return {"ok": False, "config": str(path.resolve()), "problems": [str(exc)], "warnings": []}
    problems = tls_problems(settings) + cluster_problems(settings) + database_problems(settings)
    return {
        "ok": not problems,
        "config": str(path.resolve()),
        "problems": problems,
        "warnings": config_warnings(settings),
    }


def effective(settings: Settings) -> dict[str, Any]:
    """The configuration in force, every default filled in; a database password as ***."""
    from mailmax.core.cli.context import safe_url

    data = settings.model_dump(mode="json")
    data["server"]["database_url"] = safe_url(data["server"]["database_url"])
    return data
