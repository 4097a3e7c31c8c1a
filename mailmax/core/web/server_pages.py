"""The dashboard, the queue and the antivirus status."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mailmax.core.api import observe as observe_api
from mailmax.core.api import queue as queue_api
from mailmax.core.api import server as server_api
from mailmax.core.api.errors import ApiError, as_api_error
from mailmax.core.services import queue as queue_service
from mailmax.core.web.app import Page, Pages
from mailmax.core.web.charts import activity_charts, stats_of
from mailmax.core.web.directory_pages import list_query_of

pages = Pages()

#: The activity counters graphed for system and for domain administrators.
ACTIVITY_KINDS = ("connections", "failed_logins", "messages", "bytes")
DOMAIN_ACTIVITY_KINDS = ("messages", "bytes")
#: Queue actions offered on selected messages: action -> button label.
QUEUE_ACTIONS = {"retry": "Retry now", "bounce": "Return to sender", "delete": "Delete"}


def state_name(state: str) -> str:
    """The state a dashboard counts a message in ("deferred (3 attempts)" is "deferred")."""
    return state.partition(" (")[0]


def listeners(page: Page) -> list[dict[str, Any]]:
    """The services listening, with address and port (system administrators only)."""
    service = page.api.service
    found = [
        {"service": listener.service, "address": port.getHost().host, "port": port.getHost().port}
        for listener, port in service.ports
    ]
    if service.api_port is not None:
        host = service.api_port.getHost()
        found.append({"service": "admin", "address": host.host, "port": host.port})
    return found


@pages.page("/admin/")
async def dashboard(page: Page) -> bytes:
    """Services up, the queue by state and the activity graphs."""
    settings = page.api.service.settings
    queued = await page.api.directory.run(queue_service.list_queue, settings, page.actor)
    states = Counter(state_name(item["state"]) for item in queued)
    assert page.actor is not None
    services = listeners(page) if page.actor.system else []
    stats = stats_of(await page.call(observe_api.stats))
    # A domain administrator's counts are per domain: only messages and bytes are kept there.
    kinds = ACTIVITY_KINDS if page.actor.system else DOMAIN_ACTIVITY_KINDS
    return page.render("dashboard.html", states=sorted(states.items()), total=len(queued),
                       services=services, charts=activity_charts(stats, kinds))  # fmt: skip


@pages.page("/admin/queue", methods=("GET", "POST"))
async def queue(page: Page) -> bytes:
    """Queued mail by state with reason and next try; retry, bounce, delete, flush."""
    if page.request.method == b"POST":
        return await _act(page)
    flags = [name for name in ("deferred", "held") if page.form.get(name) in ("True", "true")]
    state = page.form.get("state", "") or (flags[0] if flags else "")
    values = {k: v for k, v in page.form.items() if k in ("q", "domain", "offset") and v}
    query = list_query_of(queue_api.QueueQuery, {**values, "deferred": state == "deferred",
                                                 "held": state == "held"})  # fmt: skip
    found = await page.call(queue_api.list_queue, query=query)
    return page.render("queue.html", result=found, query=query, state=state,
                       actions=QUEUE_ACTIONS)  # fmt: skip


_HANDLERS = {"retry": queue_api.retry, "bounce": queue_api.bounce, "delete": queue_api.delete}


async def _act(page: Page) -> bytes:
    action = page.form.get("action", "")
    ids = [key.removeprefix("id.") for key in page.form if key.startswith("id.")]
    if action == "flush":
        result = await page.call(queue_api.flush)
    elif action in _HANDLERS:
        if not ids:
            raise page.done("select the messages first", "/admin/queue")
        if action != "retry" and page.form.get("confirm") != "yes":
            return page.render("queue_confirm.html", action=action, label=QUEUE_ACTIONS[action],
                               ids=ids)  # fmt: skip
        try:
            result = await page.call(_HANDLERS[action], queue_api.Action(ids=ids))
        except ApiError as exc:
            if exc.status == 403:
                raise
            raise page.done(exc.message, "/admin/queue") from None
    else:
        raise ApiError(422, f"unknown queue action {action!r}")
    raise page.done(result.message, "/admin/queue")


@pages.page("/admin/antivirus")
async def antivirus(page: Page) -> bytes:
    """Whether the virus scanner answers, its signatures and last update."""
    try:
        status = await page.call(server_api.antivirus_status)
    except Exception as exc:  # the scanner's state, whatever it is, is what the page shows
        error = as_api_error(exc)
        if error.status == 403:
            raise
        status = {"error": error.message}
    return page.render("antivirus.html", scanner=status)


@pages.page("/admin/antivirus/users", methods=("POST",))
async def antivirus_users(page: Page) -> bytes:
    """Switch scanning on or off for every user of a domain."""
    domain = page.form.get("domain", "").strip()
    body = server_api.AntivirusSwitch(enabled=page.form.get("action") == "on")
    done = await page.call(server_api.antivirus_users, body, domain=domain)
    raise page.done(done["message"], "/admin/antivirus")
