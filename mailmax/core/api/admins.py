"""Administrators, API tokens and the audit log."""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mailmax.core.api.login import AdminInfo
from mailmax.core.api.routing import Access, RequestContext, Router
from mailmax.core.services import admins as service

router = Router("administrators")


class Rights(BaseModel):
    """Rights to grant or take: system rights and/or domains."""

    model_config = ConfigDict(extra="forbid")

    system: bool = False
    domains: list[str] = Field(default_factory=list, max_length=1000)


class RevokeAnswer(BaseModel):
    """What is left after a revoke (None: no administrator any more)."""

    admin: AdminInfo | None


class TokenOut(BaseModel):
    """An API token as listed (never its secret)."""

    id: str
    admin: str
    name: str
    created: float
    expires: float | None
    last_used: float | None


class NewToken(BaseModel):
    """A token to make."""

    model_config = ConfigDict(extra="forbid")

    admin: str = Field(min_length=3, max_length=320, description="Its administrator.")
    name: str = Field(min_length=1, max_length=100, description="What it is for.")
    days: float | None = Field(None, gt=0, description="Expire after N days (default never).")


class CreatedToken(TokenOut):
    """A new token: ``token`` is shown this once."""

    token: str


class TokenQuery(BaseModel):
    """Filter of the token list."""

    model_config = ConfigDict(extra="forbid")

    admin: str = Field("", description="Only this administrator's tokens.")


class AuditQuery(BaseModel):
    """Filters of the audit log."""

    model_config = ConfigDict(extra="forbid")

    who: str = Field("", description="Only changes by this actor.")
    since: float = Field(0.0, ge=0, description="Only changes from this Unix time on.")
    limit: int = Field(100, ge=1, le=1000)


class AuditOut(BaseModel):
    """One recorded change."""

    id: int
    at: float
    actor: str
    origin: str
    action: str
    target: str
    detail: dict[str, Any]


def _info(admin: Any) -> AdminInfo:
    return AdminInfo(address=admin.address, system=admin.system, domains=list(admin.domains))


@router.get("/api/v1/admins", summary="List administrators", access=Access.SYSTEM,
            response=list[AdminInfo])  # fmt: skip
async def list_admins(ctx: RequestContext) -> list[AdminInfo]:
    """Every administrator and their rights."""
    return [_info(a) for a in await ctx.run(service.list_admins, ctx.directory, ctx.actor)]


@router.post("/api/v1/admins/{address}/grant", summary="Grant administrator rights",
             access=Access.SYSTEM, body=Rights, response=AdminInfo)  # fmt: skip
async def grant(ctx: RequestContext, address: str) -> AdminInfo:
    """Make a user a system administrator or give it domains to administer."""
    body: Rights = ctx.body
    admin = await ctx.run(service.grant, ctx.directory, ctx.actor, address, system=body.system,
                          domains=tuple(body.domains))  # fmt: skip
    return _info(admin)


@router.post("/api/v1/admins/{address}/revoke", summary="Take administrator rights",
             access=Access.SYSTEM, body=Rights, response=RevokeAnswer)  # fmt: skip
async def revoke(ctx: RequestContext, address: str) -> RevokeAnswer:
    """Take system rights or domains; with neither, every right and every token."""
    body: Rights = ctx.body
    left = await ctx.run(service.revoke, ctx.directory, ctx.actor, address, system=body.system,
                         domains=tuple(body.domains))  # fmt: skip
    return RevokeAnswer(admin=_info(left) if left is not None else None)


@router.get("/api/v1/tokens", summary="List API tokens", access=Access.ANY, query=TokenQuery,
            response=list[TokenOut])  # fmt: skip
async def list_tokens(ctx: RequestContext) -> list[Any]:
    """API tokens (a domain administrator sees their own), never their secret."""
    found = await ctx.run(service.list_tokens, ctx.directory, ctx.actor, ctx.query.admin)
    return [dataclasses.asdict(t) for t in found]


@router.post("/api/v1/tokens", summary="Make an API token", access=Access.ANY, body=NewToken,
             response=CreatedToken, status=201)  # fmt: skip
async def create_token(ctx: RequestContext) -> CreatedToken:
    """Make a token (a domain administrator: only for themselves); it is shown this once."""
    body: NewToken = ctx.body
    token, secret = await ctx.run(
        service.create_token, ctx.directory, ctx.actor, body.admin, body.name, body.days
    )
    return CreatedToken(**dataclasses.asdict(token), token=secret)


@router.delete("/api/v1/tokens/{token_id}", summary="Revoke an API token",
               access=Access.ANY)  # fmt: skip
async def revoke_token(ctx: RequestContext, token_id: str) -> None:
    """Delete a token (a domain administrator: only their own); it stops working at once."""
    await ctx.run(service.revoke_token, ctx.directory, ctx.actor, token_id)


@router.get("/api/v1/audit", summary="The audit log", access=Access.ANY, query=AuditQuery,
            response=list[AuditOut])  # fmt: skip
async def audit_log(ctx: RequestContext) -> list[Any]:
    """Recorded changes, newest first (a domain administrator sees their own)."""
    query: AuditQuery = ctx.query
    found = await ctx.run(service.audit_entries, ctx.directory, ctx.actor, since=query.since,
                          who=query.who, limit=query.limit)  # fmt: skip
    return [dataclasses.asdict(e) for e in found]
