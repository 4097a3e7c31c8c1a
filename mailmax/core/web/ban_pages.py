"""Banned clients (IP addresses, networks) and senders (addresses, domains, wildcards)."""

from __future__ import annotations

from mailmax.core.api import bans as bans_api
from mailmax.core.web.app import Page, Pages
from mailmax.core.web.forms import Field, FormError, posted, to_model

pages = Pages()

BAN_FIELDS = [
    Field("pattern", "Ban", required=True,
          help="An IP address or network (clients), or an address, domain or wildcard "
          "(senders)."),
    Field("domain", "Only for mail to this domain", help="Empty: the whole system."),
    Field("listener", "Only on this listener", help="Empty: every listener."),
    Field("expires", "Until", help="A duration (30m, 12h, 7d) or a date (UTC); empty: never."),
    Field("reason", "Reason", help="Never shown to clients."),
]  # fmt: skip


@pages.page("/admin/bans", methods=("GET", "POST"))
async def bans(page: Page) -> bytes:
    """The bans in force, filtered by domain; a form to add one."""
    errors, values = FormError(), {}
    if page.request.method == b"POST":
        values = posted(BAN_FIELDS, page.form)
        try:
            body = to_model(bans_api.NewBan, BAN_FIELDS, page.form)
            made = await page.submit(bans_api.add_ban, body, values=values, primary="pattern")
            raise page.done(f"{made['pattern']} banned ({made['where']})", "/admin/bans")
        except FormError as refused:
            errors = refused
    domain = page.form.get("filter_domain", "").strip() or None
    query = bans_api.BanQuery(domain=domain, expired=page.form.get("expired") == "on")
    found = await page.call(bans_api.list_bans, query=query)
    return page.render("bans.html", status=422 if values else 200, bans=found,
                       fields=BAN_FIELDS, values=values, errors=errors,
                       filter_domain=domain or "", expired=query.expired)  # fmt: skip


@pages.page("/admin/bans/lift", methods=("POST",))
async def lift(page: Page) -> bytes:
    """Lift one ban."""
    query = bans_api.LiftQuery(
        pattern=page.form.get("pattern", ""),
        domain=page.form.get("domain") or None,
        listener=page.form.get("listener") or None,
    )
    lifted = await page.call(bans_api.lift_ban, query=query)
    raise page.done(f"ban on {lifted['pattern']} lifted", "/admin/bans")
