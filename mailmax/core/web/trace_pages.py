"""The live trace: a page with filters, and the event stream its script reads.

The stream is the API's trace handler (``/api/v1/trace``, server-sent events) served under
``/admin/`` so that the browser's session cookie, which is sent to ``/admin`` only, signs it
in: the same handler, the same rights (a domain administrator gets only their domains'
events) and the same masking of secrets. It is a GET that changes nothing, and no
cross-origin header is ever sent, so another site cannot read it. Signing out ends the
session's streams.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from mailmax.core.api import observe as observe_api
from mailmax.core.api.errors import ApiError
from mailmax.core.observe.events import CATEGORIES, SERVICES
from mailmax.core.observe.trace import TraceRequestError, parse_filter
from mailmax.core.web.app import Page, Pages

pages = Pages()

#: The filters of the trace page (query string names, as the API's trace takes them).
FILTERS = ("service", "category", "ip", "user")


def trace_query(page: Page) -> observe_api.TraceQuery:
    """The page's filters as the API's trace query; ApiError 422 when one is not valid."""
    values = {name: page.form.get(name, "").strip() for name in FILTERS}
    try:
        query = observe_api.TraceQuery.model_validate(values)
        parse_filter(
            json.dumps(
                {
                    "services": [v for v in query.service.split(",") if v],
                    "categories": [v for v in query.category.split(",") if v],
                }
            )
        )
    except (ValueError, TraceRequestError) as exc:
        raise ApiError(422, str(exc).splitlines()[0]) from None
    return query


@pages.page("/admin/trace")
async def trace(page: Page) -> bytes:
    """The filters and the table the events are added to as they happen."""
    query = trace_query(page)
    chosen = {name: getattr(query, name) for name in FILTERS}
    source = "/admin/trace/events?" + urlencode({k: v for k, v in chosen.items() if v})
    return page.render("trace.html", chosen=chosen, services=SERVICES, categories=CATEGORIES,
                       source=source)  # fmt: skip


@pages.page("/admin/trace/events")
async def trace_events(page: Page) -> object:
    """The events the filters take, as server-sent events, until the browser leaves or the
    session signs out."""
    streaming = await page.call(observe_api.trace, query=trace_query(page))
    page.hold_stream()
    return streaming
