"""The configuration: the file on disk checked, and the configuration in force."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mailmax.core.api.routing import Access, RequestContext, Router
from mailmax.core.services import configcheck

router = Router("config")


class ConfigCheck(BaseModel):
    """The config file checked with its TLS files and database (as `mailmax config check`)."""

    ok: bool
    config: str
    problems: list[str]
    warnings: list[str]


@router.get("/api/v1/config/check", summary="Check the config file", access=Access.SYSTEM,
            response=ConfigCheck)  # fmt: skip
async def config_check(ctx: RequestContext) -> dict[str, Any]:
    """The config file the server was started with, read again from disk and checked: what a
    reload would meet."""
    return await ctx.run(configcheck.check, Path(ctx.settings.source))


@router.get("/api/v1/config", summary="The configuration in force", access=Access.SYSTEM,
            response=dict[str, Any])  # fmt: skip
async def config_show(ctx: RequestContext) -> dict[str, Any]:
    """The configuration the server runs with, every default filled in (as `mailmax config
    show --json`); a database password is shown as ***."""
    return configcheck.effective(ctx.settings)
