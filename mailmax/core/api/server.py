"""The running server: reload, failed-login blocks, antivirus status and per-user switches."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pydantic import BaseModel, Field

from mailmax.core.api.errors import ApiError
from mailmax.core.api.routing import Access, RequestContext, Router, domain_of
from mailmax.core.services.actor import audit
from mailmax.core.services.antivirus import switch_users

router = Router("server")


class ReloadAnswer(BaseModel):
    """What a reload did."""

    plugins: list[str] = Field(description="The plugin set now running.")
    applied: list[str] = Field(description="Keys applied now.")
    restart: list[str] = Field(description="Changed keys that wait for a restart.")


class Blocked(BaseModel):
    """A failed-login block or delay in force."""

    kind: str
    ip: str
    account: str
    failures: int
    blocked_seconds: float
    delay_seconds: float


class Unblocked(BaseModel):
    """How many failed-login records were forgotten."""

    target: str
    records: int


@router.post("/api/v1/reload", summary="Reload the configuration and plugins",
             access=Access.SYSTEM, response=ReloadAnswer)  # fmt: skip
async def reload(ctx: RequestContext) -> ReloadAnswer:
    """Re-read the config file, apply what can change live and swap in a fresh plugin set;
    a reload that fails validation changes nothing and says why (422)."""
    from mailmax.core.service import ReloadError

    try:
        report = ctx.api.service.reload()
    except ReloadError as exc:
        raise ApiError(422, f"reload refused, nothing changed: {exc}") from None
    await ctx.run(audit, ctx.directory, ctx.actor, "server.reload", "config")
    return ReloadAnswer(**dataclasses.asdict(report))


@router.get("/api/v1/auth/blocked", summary="Failed-login blocks and delays",
            access=Access.SYSTEM, response=list[Blocked])  # fmt: skip
async def auth_blocked(ctx: RequestContext) -> list[Any]:
    """Every block and delay in force (see `mailmax auth blocked`)."""
    return ctx.api.service.authlimit.current()


@router.delete("/api/v1/auth/blocked/{target}", summary="Forget failed logins",
               access=Access.SYSTEM, response=Unblocked)  # fmt: skip
async def auth_unblock(ctx: RequestContext, target: str) -> Unblocked:
    """Forget the failed logins of an IP address or an account."""
    from mailmax.core.admin import auth_commands

    _, with_argument = auth_commands(ctx.api.service.authlimit)
    answer = json.loads(with_argument["auth-unblock"](target))
    await ctx.run(audit, ctx.directory, ctx.actor, "auth.unblock", target)
    return Unblocked(**answer)


@router.get("/api/v1/antivirus/status", summary="Virus scanner status", access=Access.SYSTEM,
            response=dict[str, Any])  # fmt: skip
async def antivirus_status(ctx: RequestContext) -> dict[str, Any]:
    """Whether the scanner answers, its signature version and the last update."""
    answer = await ctx.api.service.plugins.plugin_command("antivirus status")
    return json.loads(answer)


@router.post("/api/v1/antivirus/update", summary="Update the virus definitions now",
             access=Access.SYSTEM, response=dict[str, Any])  # fmt: skip
async def antivirus_update(ctx: RequestContext) -> dict[str, Any]:
    """Run the definition update (as `mailmax antivirus update`)."""
    answer = await ctx.api.service.plugins.plugin_command("antivirus update")
    await ctx.run(audit, ctx.directory, ctx.actor, "antivirus.update", "definitions")
    return json.loads(answer)


class AntivirusSwitch(BaseModel):
    """Scan the mail of every user of the domain, or of none."""

    enabled: bool


class AntivirusSwitched(BaseModel):
    """What the switch did."""

    message: str
    domain: str
    enabled: bool
    users: int


@router.put("/api/v1/domains/{domain}/antivirus", summary="Antivirus for every user of a domain",
            access=domain_of("domain"), body=AntivirusSwitch,
            response=AntivirusSwitched)  # fmt: skip
async def antivirus_users(ctx: RequestContext, domain: str) -> dict[str, Any]:
    """Switch scanning on or off for each user of the domain (as `mailmax antivirus users`)."""
    return await ctx.run(switch_users, ctx.directory, ctx.actor, domain, ctx.body.enabled)
