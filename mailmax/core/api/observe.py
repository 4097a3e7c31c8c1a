"""What the server is doing, over the admin API: live trace (server-sent events), activity
counters, users' login records and the Prometheus metrics."""

from __future__ import annotations

import ipaddress
import json

from pydantic import BaseModel, ConfigDict, Field

from mailmax.core.api.errors import ApiError
from mailmax.core.api.routing import (
    STREAMING,
    Access,
    RawResponse,
    RequestContext,
    Router,
    domain_of,
)
from mailmax.core.config import parse_networks
from mailmax.core.observe.trace import TraceRequestError

router = Router("observability")

#: The Prometheus text format's media type.
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class TraceQuery(BaseModel):
    """Which events to stream; every field may be left out."""

    service: str = Field("", description="Services, comma-separated (smtp,pop3,...).")
    category: str = Field("", description="Categories, comma-separated (commands,logins,...).")
    ip: str = Field("", max_length=64, description="Only sessions of this client address.")
    user: str = Field("", max_length=320, description="Only events of this user.")


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@router.get(
    "/api/v1/trace",
    summary="Stream live events (server-sent events)",
    access=Access.ANY,
    query=TraceQuery,
    produces="text/event-stream",
)
async def trace(ctx: RequestContext) -> object:
    """One ``data:`` line of JSON per event (``time``, ``service``, ``category``, ``text``,
    ``session``, ``ip``, ``user``, ``domains``) until the client closes. Secrets are shown as
    ``***``. A domain administrator gets only the events of their domains."""
    actor = ctx.actor
    assert actor is not None
    wanted = json.dumps(
        {
            "services": _names(ctx.query.service),
            "categories": _names(ctx.query.category),
            "ip": ctx.query.ip,
            "user": ctx.query.user,
        }
    )
    request = ctx.request
    observe = ctx.api.service.observe
    domains = frozenset() if actor.system else frozenset(actor.domains)
    try:
        running = observe.start_trace(
            wanted,
            request,
            write=lambda line: request.write(b"data: " + line.encode() + b"\n\n"),
            domains=domains,
        )
    except TraceRequestError as exc:
        raise ApiError(422, str(exc)) from None
    request.setResponseCode(200)
    request.setHeader(b"content-type", b"text/event-stream")
    request.write(b": tracing\n\n")
    request.notifyFinish().addBoth(lambda _: observe.end_trace(running))
    return STREAMING


class Activity(BaseModel):
    """Counts over the last hour, 12 hours, 24 hours and week."""

    model_config = ConfigDict(serialize_by_alias=True)

    hour: int
    h12: int = Field(alias="12h")
    h24: int = Field(alias="24h")
    week: int


class ServiceActivity(BaseModel):
    """One service's (or, for a domain administrator, one domain's) activity."""

    connections: Activity
    failed_logins: Activity
    messages: Activity
    bytes: Activity


@router.get(
    "/api/v1/stats",
    summary="Activity per service (per domain for a domain administrator)",
    access=Access.ANY,
    response=dict[str, ServiceActivity],
)
async def stats(ctx: RequestContext) -> dict[str, ServiceActivity]:
    """``{service: {kind: {hour, 12h, 24h, week}}}`` as ``mailmax stats --json`` prints it.
    A domain administrator gets ``{domain: ...}`` for each of their domains: the messages
    and bytes received for its users (connections and failed log-ins are not counted per
    domain and stay 0)."""
    actor = ctx.actor
    assert actor is not None
    activity = ctx.api.service.observe.activity
    summary = activity.summary() if actor.system else activity.domain_summary(actor.domains)
    return {name: ServiceActivity.model_validate(kinds) for name, kinds in summary.items()}


class LoginRecord(BaseModel):
    """One recorded log-in."""

    service: str
    ip: str
    time: float = Field(description="Unix time.")


@router.get(
    "/api/v1/users/{address}/logins",
    summary="A user's recorded log-ins, newest first",
    access=domain_of("address"),
    response=list[LoginRecord],
)
async def logins(ctx: RequestContext, address: str) -> list[LoginRecord]:
    """The newest log-ins of the user (the directory keeps 20 per user)."""
    found = await ctx.run(ctx.directory.logins, address)
    if found is None:
        raise ApiError(404, f"no user {address}")
    return [LoginRecord(service=s, ip=ip, time=at) for s, ip, at in found]


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    access=Access.PUBLIC,
    produces=PROMETHEUS_TYPE,
)
async def metrics(ctx: RequestContext) -> RawResponse:
    """Open to clients in ``[admin] metrics_networks``; others need a system
    administrator's token (a domain administrator never gets it)."""
    networks = parse_networks(tuple(ctx.settings.admin.metrics_networks))
    try:
        client = ipaddress.ip_address(ctx.client_ip)
    except ValueError:
        client = None
    if client is None or not any(client in network for network in networks):
        actor = await ctx.authenticate()
        if actor is None:
            raise ApiError(401, "authentication required: send Authorization: Bearer <token>")
        actor.require_system("read the metrics")
    text = ctx.api.service.observe.prometheus.text()
    return RawResponse(text.encode(), PROMETHEUS_TYPE)
