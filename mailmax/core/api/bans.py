"""Banned clients and senders."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mailmax.core.api.routing import Access, RequestContext, Router
from mailmax.core.services.bans import BanAdmin, parse_expiry

router = Router("bans")


class BanOut(BaseModel):
    """A ban: what, where, why, when added, until when."""

    id: int
    pattern: str
    kind: str
    scope: str
    scope_value: str
    where: str
    cause: str
    reason: str
    added: float
    added_at: str | None
    expires: float | None
    expires_at: str | None


class BanScope(BaseModel):
    """Where a ban holds: system-wide (neither), for a domain's recipients (senders only) or
    on one listening address."""

    model_config = ConfigDict(extra="forbid")

    domain: str | None = None
    listener: str | None = None


class NewBan(BanScope):
    """A ban to add (an existing one gets the new expiry and reason)."""

    pattern: str = Field(min_length=1, max_length=320, description="IP, network, address, domain.")
    expires: str | None = Field(None, description="A duration (30m, 12h, 7d) or date (UTC).")
    reason: str = Field("", max_length=500, description="Why (never shown to clients).")


class BanQuery(BanScope):
    """Filters of the ban list."""

    system: bool = Field(False, description="Only the system-wide bans.")
    expired: bool = Field(False, description="Also the bans that expired (until purged).")


class LiftQuery(BanScope):
    """The ban to lift."""

    pattern: str = Field(min_length=1, max_length=320)


def _admin(ctx: RequestContext) -> BanAdmin:
    return BanAdmin(ctx.settings, ctx.directory, ctx.actor)


@router.get("/api/v1/bans", summary="List bans", access=Access.ANY, query=BanQuery,
            response=list[BanOut])  # fmt: skip
async def list_bans(ctx: RequestContext) -> list[dict[str, Any]]:
    """The bans (a domain administrator: their domains' sender bans)."""
    q: BanQuery = ctx.query
    return await ctx.run(
        lambda: _admin(ctx).listing(
            domain=q.domain, listener=q.listener, system_only=q.system, expired=q.expired
        )
    )


@router.post("/api/v1/bans", summary="Add a ban", access=Access.ANY, body=NewBan,
             response=BanOut, status=201)  # fmt: skip
async def add_ban(ctx: RequestContext) -> dict[str, Any]:
    """Ban a client (IP, network) or a sender (address, domain, wildcards); the running
    server applies it within seconds."""
    body: NewBan = ctx.body
    now = time.time()
    until = None if body.expires is None else parse_expiry(body.expires, now)
    return await ctx.run(lambda: _admin(ctx).add(body.pattern, domain=body.domain,
                                                 listener=body.listener, expires=until,
                                                 reason=body.reason, now=now))  # fmt: skip


@router.delete("/api/v1/bans", summary="Lift a ban", access=Access.ANY, query=LiftQuery,
               response=BanOut)  # fmt: skip
async def lift_ban(ctx: RequestContext) -> dict[str, Any]:
    """Lift the ban on ``pattern`` of a scope."""
    q: LiftQuery = ctx.query
    return await ctx.run(lambda: _admin(ctx).delete(q.pattern, domain=q.domain,
                                                    listener=q.listener))  # fmt: skip
