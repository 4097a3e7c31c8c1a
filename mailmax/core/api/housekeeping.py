"""Housekeeping now: old messages removed and idle users reported or disabled (or a dry run)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from twisted.internet import reactor

from mailmax.core.api.routing import Access, RequestContext, Router
from mailmax.core.services import housekeeping

router = Router("housekeeping")


class HousekeepingRun(BaseModel):
    """Run housekeeping over every domain (system administrators) or one domain."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False
    domain: str | None = None


class HousekeepingReport(BaseModel):
    """What the run did (or would do): the domains it covered, the folders cleaned, the idle
    users, the users it could not housekeep, and the report as text lines."""

    dry_run: bool
    now: float
    domains: list[str]
    removed: list[dict[str, Any]]
    inactive: list[dict[str, Any]]
    errors: list[str]
    lines: list[str]


@router.post(
    "/api/v1/housekeeping/run",
    summary="Run housekeeping now",
    access=Access.ANY,
    body=HousekeepingRun,
    response=HousekeepingReport,
)
async def run_housekeeping(ctx: RequestContext) -> dict[str, Any]:
    """Each domain's housekeeping settings applied now; a domain administrator names their
    domain."""
    body: HousekeepingRun = ctx.body
    report = await ctx.run(
        housekeeping.run, ctx.settings, ctx.directory, ctx.actor, reactor.seconds(),
        dry_run=body.dry_run, domain=body.domain,
    )  # fmt: skip
    lines = housekeeping.report_lines(report) + housekeeping.error_lines(report)
    return {**report.as_dict(), "lines": lines}
