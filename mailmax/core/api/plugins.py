"""Plugins per scope: list, show, switch on or off, change settings, check."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mailmax.core.api.routing import Access, RequestContext, Router
from mailmax.core.services.plugins import PluginAdmin

router = Router("plugins")


class PluginRow(BaseModel):
    """A plugin: status (enabled, available, not loaded, error), origin, scopes, hooks."""

    name: str
    status: str
    origin: str
    scopes: list[str]
    hooks: list[str]
    error: str | None = None


class PluginList(BaseModel):
    """Every plugin, and per hook the plugins implementing it in run order."""

    plugins: list[PluginRow]
    hooks: dict[str, list[str]]


class ScopeQuery(BaseModel):
    """The scope: system (neither), a domain or a user."""

    model_config = ConfigDict(extra="forbid")

    domain: str | None = None
    user: str | None = None


class Switch(ScopeQuery):
    """Switch a plugin on or off at a scope."""

    enabled: bool


class SettingsChange(ScopeQuery):
    """Settings to set at a scope (null removes a setting there)."""

    settings: dict[str, Any] = Field(min_length=1)


class Change(BaseModel):
    """What a change did."""

    message: str
    plugin: str
    scope: str
    name: str | None = None
    enabled: bool | None = None
    settings: dict[str, Any] | None = None


class Problems(BaseModel):
    """Problems a reload would meet (empty: none)."""

    ok: bool
    problems: list[str]


def _admin(ctx: RequestContext) -> PluginAdmin:
    return PluginAdmin(ctx.settings, ctx.directory, ctx.actor)


@router.get("/api/v1/plugins", summary="List plugins", access=Access.ANY, response=PluginList)
async def list_plugins(ctx: RequestContext) -> dict[str, Any]:
    """Every plugin with its status, origin, scopes and hooks; the hook order."""
    rows, hooks, _ = await ctx.run(lambda: _admin(ctx).listing())
    return {"plugins": rows, "hooks": hooks}


@router.get("/api/v1/plugins/{name}", summary="A plugin's switch and settings at a scope",
            access=Access.ANY, query=ScopeQuery, response=dict[str, Any])  # fmt: skip
async def show_plugin(ctx: RequestContext, name: str) -> dict[str, Any]:
    """The effective switch and settings at the scope, each with the scope it comes from
    (system scope: system administrators only)."""
    query: ScopeQuery = ctx.query
    return await ctx.run(lambda: _admin(ctx).show(name, query.domain, query.user))


@router.put("/api/v1/plugins/{name}/enabled", summary="Switch a plugin on or off",
            access=Access.ANY, body=Switch, response=Change)  # fmt: skip
async def switch_plugin(ctx: RequestContext, name: str) -> Change:
    """Switch the plugin at the scope (system: the config file, applied at the next reload;
    a domain or user: an override, seen at once)."""
    body: Switch = ctx.body
    message, data = await ctx.run(
        lambda: _admin(ctx).switch(name, body.domain, body.user, body.enabled)
    )
    return Change(message=message, **data)


@router.patch("/api/v1/plugins/{name}/settings", summary="Change a plugin's settings",
              access=Access.ANY, body=SettingsChange, response=Change)  # fmt: skip
async def change_settings(ctx: RequestContext, name: str) -> Change:
    """Set settings at the scope; a value the plugin does not allow, or one that would make a
    reload fail, is refused (422) and nothing is written."""
    body: SettingsChange = ctx.body
    message, data = await ctx.run(
        lambda: _admin(ctx).change_settings(name, body.domain, body.user, body.settings)
    )
    return Change(message=message, **data)


@router.get("/api/v1/plugin-check", summary="Check every plugin like a reload",
            access=Access.SYSTEM, response=Problems)  # fmt: skip
async def check_plugins(ctx: RequestContext) -> Problems:
    """Load every plugin and validate every setting and override, like a reload would."""
    problems = await ctx.run(lambda: _admin(ctx).check())
    return Problems(ok=not problems, problems=problems)
