"""Rules for incoming mail: the system's list, each domain's and each user's."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mailmax.core.api.routing import Access, RequestContext, Router
from mailmax.core.services.rules import MAX_TEST_MESSAGE, RuleAdmin

router = Router("rules")

LINES = 30  # as many conditions or actions as a rule may have


class RuleOut(BaseModel):
    """A rule: its list, place, name, state, conditions (all must hold) and actions."""

    name: str
    scope: str
    scope_value: str
    where: str
    position: int
    enabled: bool
    state: str
    conditions: list[str]
    actions: list[str]
    summary: str


class RuleScope(BaseModel):
    """One list: ``system`` (system administrators), a ``domain``'s or a ``user``'s."""

    model_config = ConfigDict(extra="forbid")

    system: bool = False
    domain: str | None = Field(None, max_length=255)
    user: str | None = Field(None, max_length=320)

    def given(self) -> bool:
        """Whether a list is named at all."""
        return bool(self.system or self.domain or self.user)


class RuleQuery(RuleScope):
    """Which rules: of one list (none given: every list the caller may see), or one rule."""

    name: str | None = Field(None, description="Only the rule of that name (404 if none).")


class RuleRef(RuleScope):
    """The rule ``name`` of a list."""

    name: str = Field(min_length=1, max_length=100)


class NewRule(RuleRef):
    """A rule to add (the syntax of conditions and actions is that of ``mailmax rule add``)."""

    conditions: list[str] = Field(min_length=1, max_length=LINES,
                                  description="e.g. 'header Subject contains invoice'")  # fmt: skip
    actions: list[str] = Field(min_length=1, max_length=LINES,
                               description="e.g. 'folder Invoices'")  # fmt: skip
    position: int = Field(0, ge=0, description="Where in the list (1 first; 0: last).")
    enabled: bool = True


class RuleChange(RuleRef):
    """What to change of the rule ``name``; what is left out stays."""

    new_name: str | None = Field(None, min_length=1, max_length=100)
    conditions: list[str] = Field(default_factory=list, max_length=LINES,
                                  description="Replace all conditions (empty: keep).")  # fmt: skip
    actions: list[str] = Field(default_factory=list, max_length=LINES,
                               description="Replace all actions (empty: keep).")  # fmt: skip
    enabled: bool | None = None
    position: int | None = Field(None, ge=1, description="Move it (1 first; past the end: last).")


class RuleTest(BaseModel):
    """A message to run through the rules that apply to ``user``; nothing is changed."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=3, max_length=320, description="The recipient.")
    message: str = Field(min_length=1, max_length=MAX_TEST_MESSAGE,
                         description="The whole message (header and body).")  # fmt: skip
    at: str | None = Field(None, description="Pretend it arrives then (server time, ISO).")


class RuleTestOut(BaseModel):
    """What the rules would do with the message."""

    user: str
    at: str
    matched: list[str]
    folder: str
    discard: bool
    discard_attachments: bool
    forward: list[str]
    notes: list[str]
    programs: list[list[str]]
    replies: list[dict[str, str]]
    terminated_by: str | None
    log: list[str] = Field(description="What test programs did.")
    lines: list[str] = Field(description="The answer as ``mailmax rule test`` prints it.")


def _admin(ctx: RequestContext) -> RuleAdmin:
    return RuleAdmin(ctx.settings, ctx.directory, ctx.actor)


def _scope(rules: RuleAdmin, given: RuleScope) -> tuple[str, str]:
    return rules.scope(given.system, given.domain, given.user)


@router.get("/api/v1/rules", summary="List rules", access=Access.ANY, query=RuleQuery,
            response=list[RuleOut])  # fmt: skip
async def list_rules(ctx: RequestContext) -> list[dict[str, Any]]:
    """The rules of one list, or of every list the caller may manage, in the order they run
    (a domain administrator: their domains' and their users' lists)."""
    q: RuleQuery = ctx.query

    def listing() -> list[dict[str, Any]]:
        rules = _admin(ctx)
        if q.name is not None:
            from mailmax.core.services.rules import rule_record

            return [rule_record(rules.find(_scope(rules, q), q.name))]
        return rules.listing(_scope(rules, q) if q.given() else None)

    return await ctx.run(listing)


@router.post("/api/v1/rules", summary="Add a rule", access=Access.ANY, body=NewRule,
             response=RuleOut, status=201)  # fmt: skip
async def add_rule(ctx: RequestContext) -> dict[str, Any]:
    """Add a rule to a list; the running server uses it within seconds."""
    b: NewRule = ctx.body

    def add() -> dict[str, Any]:
        rules = _admin(ctx)
        return rules.add(_scope(rules, b), b.name, b.conditions, b.actions,
                         position=b.position, enabled=b.enabled)  # fmt: skip

    return await ctx.run(add)


@router.patch("/api/v1/rules", summary="Change a rule", access=Access.ANY, body=RuleChange,
              response=RuleOut)  # fmt: skip
async def change_rule(ctx: RequestContext) -> dict[str, Any]:
    """Rename it, replace its conditions or actions, switch it on or off, move it."""
    b: RuleChange = ctx.body

    def change() -> dict[str, Any]:
        rules = _admin(ctx)
        scope = _scope(rules, b)
        name = b.name
        record = None
        if b.new_name is not None or b.conditions or b.actions:
            record = rules.edit(scope, name, new_name=b.new_name, conditions=b.conditions,
                                actions=b.actions)  # fmt: skip
            name = record["name"]
        if b.enabled is not None:
            record, _ = rules.switch(scope, name, b.enabled)
        if b.position is not None:
            record = rules.move(scope, name, b.position)
        if record is None:
            from mailmax.core.services.rules import rule_record

            record = rule_record(rules.find(scope, name))
        return record

    return await ctx.run(change)


@router.delete("/api/v1/rules", summary="Delete a rule", access=Access.ANY, query=RuleRef,
               response=RuleOut)  # fmt: skip
async def delete_rule(ctx: RequestContext) -> dict[str, Any]:
    """Delete the rule ``name`` of a list; the rules after it move up."""
    q: RuleRef = ctx.query

    def delete() -> dict[str, Any]:
        rules = _admin(ctx)
        return rules.delete(_scope(rules, q), q.name)

    return await ctx.run(delete)


@router.post("/api/v1/rules/test", summary="Try the rules on a message", access=Access.ANY,
             body=RuleTest, response=RuleTestOut)  # fmt: skip
async def test_rules(ctx: RequestContext) -> dict[str, Any]:
    """Run the message through the rules that apply to ``user`` (system, domain, user lists)
    and say which matched and what would be done; nothing is stored or sent. Test programs
    do run, in a temporary folder removed afterwards."""
    b: RuleTest = ctx.body
    answer = await ctx.run(
        lambda: _admin(ctx).test(b.user, [b.message.encode("utf-8", "surrogateescape")], b.at)
    )
    return {"user": answer["user"], "at": answer["at"], **answer["messages"][0]}
