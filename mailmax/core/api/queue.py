"""The queue: list, show, retry, flush, delete, bounce."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mailmax.core.api.errors import ApiError
from mailmax.core.api.listing import ListQuery, Page, page
from mailmax.core.api.routing import Access, RequestContext, Router
from mailmax.core.queue.control import ControlError, Request
from mailmax.core.services import queue as service
from mailmax.core.services.actor import audit

router = Router("queue")


class QueuedRecipient(BaseModel):
    """One recipient of a queued message."""

    address: str
    kind: str
    state: str
    attempts: int
    next_attempt: str | None
    last_error: str


class QueuedMessage(BaseModel):
    """A queued message: where it waits, its state, next try and why."""

    id: str
    where: Literal["queue", "hold"]
    received: str | None
    age_seconds: int
    size: int
    sender: str
    client_ip: str
    state: str
    next_attempt: str | None
    reason: str
    recipients: list[QueuedRecipient]
    headers: dict[str, str] | None = None


class QueueQuery(ListQuery):
    """Filters of the queue list (``q``: sender or recipient contains)."""

    domain: str | None = Field(None, description="Only mail waiting for recipients here.")
    deferred: bool = Field(False, description="Only mail that failed at least once.")
    held: bool = Field(False, description="Only mail held for ETRN domains.")


class Action(BaseModel):
    """The messages to act on: ids, or every waiting message, or those waiting for a domain."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(default_factory=list, max_length=10000)
    all: bool = False
    domain: str = ""


class ActionResult(BaseModel):
    """What the queue runner did."""

    message: str
    action: str
    ids: list[str]
    released: list[str]


_SORT = {
    "received": lambda m: (m["received"] or "", m["id"]),
    "size": lambda m: (m["size"], m["id"]),
    "sender": lambda m: (m["sender"], m["id"]),
}


@router.get("/api/v1/queue", summary="List queued messages", access=Access.ANY,
            query=QueueQuery, response=Page[QueuedMessage])  # fmt: skip
async def list_queue(ctx: RequestContext) -> dict[str, Any]:
    """Queued messages, oldest first (a domain administrator: mail for their domains, with
    only their recipients)."""
    query: QueueQuery = ctx.query
    found = await ctx.run(service.list_queue, ctx.settings, ctx.actor, domain=query.domain,
                          deferred=query.deferred, held=query.held)  # fmt: skip
    if query.q:
        text = query.q.lower()
        found = [m for m in found if text in m["sender"].lower()
                 or any(text in r["address"].lower() for r in m["recipients"])]  # fmt: skip
    return page(found, query, _SORT, "received")


@router.get("/api/v1/queue/{queue_id}", summary="Show a queued message", access=Access.ANY,
            response=QueuedMessage)  # fmt: skip
async def show_message(ctx: RequestContext, queue_id: str) -> dict[str, Any]:
    """One queued message: envelope, each recipient's state and last error, header fields."""
    return await ctx.run(service.show, ctx.settings, ctx.actor, queue_id)


async def _act(ctx: RequestContext, action: str, body: Action) -> ActionResult:
    try:
        request = Request(action, ids=tuple(body.ids), all=body.all, domain=body.domain.lower())
    except ControlError as exc:
        raise ApiError(422, str(exc)) from None
    if not (request.ids or request.all or request.domain):
        raise ApiError(422, "name the messages: ids, all or domain")
    await ctx.run(service.check_request, ctx.settings, ctx.actor, request)
    runner = ctx.api.service.queue
    try:
        result = await runner.control(request)
    except ControlError as exc:
        raise ApiError(404 if request.ids else 422, str(exc)) from None
    await ctx.run(audit, ctx.directory, ctx.actor, f"queue.{action}",
                  ",".join(result.ids) or request.domain or "all", ids=result.ids)  # fmt: skip
    return ActionResult(message=result.message, action=action, ids=result.ids,
                        released=result.released)  # fmt: skip


@router.post("/api/v1/queue/retry", summary="Retry queued messages now", access=Access.ANY,
             body=Action, response=ActionResult)  # fmt: skip
async def retry(ctx: RequestContext) -> ActionResult:
    """Try waiting messages now (``domain`` also releases held ETRN mail for it)."""
    return await _act(ctx, "retry", ctx.body)


@router.post("/api/v1/queue/flush", summary="Retry every waiting message now",
             access=Access.SYSTEM, response=ActionResult)  # fmt: skip
async def flush(ctx: RequestContext) -> ActionResult:
    """Try every waiting message now (held ETRN mail stays held)."""
    return await _act(ctx, "retry", Action(all=True))


@router.post("/api/v1/queue/delete", summary="Delete queued messages", access=Access.ANY,
             body=Action, response=ActionResult)  # fmt: skip
async def delete(ctx: RequestContext) -> ActionResult:
    """Remove messages without telling the sender."""
    return await _act(ctx, "delete", ctx.body)


@router.post("/api/v1/queue/bounce", summary="Return queued messages to their senders",
             access=Access.ANY, body=Action, response=ActionResult)  # fmt: skip
async def bounce(ctx: RequestContext) -> ActionResult:
    """Return messages to their senders now, with a delivery status notification."""
    return await _act(ctx, "bounce", ctx.body)
