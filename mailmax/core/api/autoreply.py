"""A user's auto-responder: show it, switch it on with settings, switch it off."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from mailmax.core.api.routing import RequestContext, Router, domain_of
from mailmax.core.services import autoreply
from mailmax.core.services.plugins import PluginAdmin

router = Router("autoreply")


class Autoreply(BaseModel):
    """Whether the user's auto-responder answers, the plugin's switch, and its settings."""

    user: str
    answering: bool
    plugin_enabled: bool
    settings: dict[str, Any]


class AutoreplyOn(BaseModel):
    """Settings to switch the auto-responder on with (those left out stay as they are)."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = None
    text: str | None = None
    from_address: str | None = None
    real_name: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    days: int | None = None


class AutoreplyChange(BaseModel):
    """What a change did."""

    message: str
    plugin: str
    scope: str
    name: str | None = None
    settings: dict[str, Any] | None = None


def _admin(ctx: RequestContext) -> PluginAdmin:
    return PluginAdmin(ctx.settings, ctx.directory, ctx.actor)


@router.get("/api/v1/users/{address}/autoreply", summary="A user's auto-responder",
            access=domain_of("address"), response=Autoreply)  # fmt: skip
async def show_autoreply(ctx: RequestContext, address: str) -> dict[str, Any]:
    """On or off, and each setting (as `mailmax autoreply show`)."""
    return await ctx.run(lambda: autoreply.show(_admin(ctx), address))


@router.put("/api/v1/users/{address}/autoreply", summary="Switch a user's auto-responder on",
            access=domain_of("address"), body=AutoreplyOn,
            response=AutoreplyChange)  # fmt: skip
async def set_autoreply(ctx: RequestContext, address: str) -> dict[str, Any]:
    """Switch it on with the settings given (as `mailmax autoreply set`)."""
    changes = ctx.body.model_dump()
    message, data = await ctx.run(lambda: autoreply.switch_on(_admin(ctx), address, changes))
    return {"message": message, **data}


@router.delete("/api/v1/users/{address}/autoreply", summary="Switch a user's auto-responder off",
               access=domain_of("address"), response=AutoreplyChange)  # fmt: skip
async def autoreply_off(ctx: RequestContext, address: str) -> dict[str, Any]:
    """Switch it off; its text and settings are kept (as `mailmax autoreply off`)."""
    message, data = await ctx.run(lambda: autoreply.switch_off(_admin(ctx), address))
    return {"message": message, **data}
