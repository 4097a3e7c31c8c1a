"""Connection control rules (system administrators only)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mailmax.core.api.routing import Access, RequestContext, Router
from mailmax.core.services.access import AccessAdmin

router = Router("access rules")

KindName = Field(description="permitted, trusted, banned or custom (with flags).",
                 pattern="^(?i:permitted|trusted|banned|custom)$")  # fmt: skip


class AccessRuleOut(BaseModel):
    """A rule of a list: where (``system``, ``listener IP`` or ``config`` for the rules the
    configuration implies), its place, the addresses it covers and what they may do."""

    id: int | None
    where: str
    listener: str
    position: int
    pattern: str
    kind: str
    flags: list[str]
    source: str
    comment: str


class AddedAccessRule(AccessRuleOut):
    """A rule added (``added``) or changed (false: the list had a rule for the pattern)."""

    added: bool


class RuleList(BaseModel):
    """Which list: the system-wide one (no listener) or a listening address's."""

    model_config = ConfigDict(extra="forbid")

    listener: str | None = Field(None, description="A listening IP address.")


class NewAccessRule(RuleList):
    """A rule to add; a rule for the same pattern in the list is changed instead."""

    pattern: str = Field(min_length=1, max_length=100,
                         description="192.0.2.7, 192.0.2.1-20, 192.0.*.*, 198.51.100.0/24, "
                         "2001:db8::/32")  # fmt: skip
    kind: str = KindName
    flags: list[str] = Field(default_factory=list, max_length=10,
                             description="A custom rule's rights: no-open-relay-check, "
                             "allow-relaying, local-mail-only, no-auth-required, "
                             "exempt-from-connection-limits.")  # fmt: skip
    position: int | None = Field(None, ge=1, description="Its place (1: tried first).")
    comment: str = Field("", max_length=500, description="A note (never shown to clients).")


class AccessQuery(RuleList):
    """Filters of the rule list."""

    system: bool = Field(False, description="Only the system-wide list.")


class AccessRuleRef(RuleList):
    """The rule for ``pattern`` in a list."""

    pattern: str = Field(min_length=1, max_length=100)


class AccessMove(AccessRuleRef):
    """Where the rule goes in its list."""

    position: int = Field(ge=1, description="1: tried first.")


def _admin(ctx: RequestContext) -> AccessAdmin:
    return AccessAdmin(ctx.settings, ctx.directory, ctx.actor)


@router.get("/api/v1/access-rules", summary="List access rules", access=Access.SYSTEM,
            query=AccessQuery, response=list[AccessRuleOut])  # fmt: skip
async def list_access_rules(ctx: RequestContext) -> list[dict[str, Any]]:
    """The rules in the order they are tried: each listener's list, the system-wide list,
    then the rules the configuration implies."""
    q: AccessQuery = ctx.query
    return await ctx.run(lambda: _admin(ctx).listing(listener=q.listener, system_only=q.system))


@router.post("/api/v1/access-rules", summary="Add an access rule", access=Access.SYSTEM,
             body=NewAccessRule, response=AddedAccessRule, status=201)  # fmt: skip
async def add_access_rule(ctx: RequestContext) -> dict[str, Any]:
    """Add a rule (last in its list unless ``position`` says otherwise); the running server
    applies it within seconds."""
    b: NewAccessRule = ctx.body
    record, added = await ctx.run(lambda: _admin(ctx).add(
        b.pattern, b.kind, flags=b.flags, listener=b.listener, position=b.position,
        comment=b.comment))  # fmt: skip
    return {**record, "added": added}


@router.patch("/api/v1/access-rules", summary="Move an access rule", access=Access.SYSTEM,
              body=AccessMove, response=AccessRuleOut)  # fmt: skip
async def move_access_rule(ctx: RequestContext) -> dict[str, Any]:
    """Move the rule for ``pattern`` to ``position`` in its list."""
    b: AccessMove = ctx.body
    return await ctx.run(lambda: _admin(ctx).move(b.pattern, b.position, listener=b.listener))


@router.delete("/api/v1/access-rules", summary="Delete an access rule", access=Access.SYSTEM,
               query=AccessRuleRef, response=AccessRuleOut)  # fmt: skip
async def delete_access_rule(ctx: RequestContext) -> dict[str, Any]:
    """Delete the rule for ``pattern`` (system-wide, or of ``listener``)."""
    q: AccessRuleRef = ctx.query
    return await ctx.run(lambda: _admin(ctx).delete(q.pattern, listener=q.listener))
