"""Connection control rules: ordered IP rules, system-wide and per listener (system
administrators only)."""

from __future__ import annotations

from mailmax.core.api import access as access_api
from mailmax.core.web.app import Page, Pages
from mailmax.core.web.forms import Field, FormError, posted, to_model

pages = Pages()

KINDS = ("permitted", "trusted", "banned", "custom")

ACCESS_FIELDS = [
    Field("pattern", "Addresses", required=True,
          help="192.0.2.7, 192.0.2.1-20, 192.0.*.*, 198.51.100.0/24 or 2001:db8::/32."),
    Field("kind", "Kind", kind="select", choices=KINDS,
          help="Permitted: normal access; trusted: no restrictions; banned: refused; "
          "custom: the rights below."),
    Field("flags", "Rights of a custom rule", kind="lines",
          help="no-open-relay-check, allow-relaying, local-mail-only, no-auth-required, "
          "exempt-from-connection-limits."),
    Field("listener", "Only on this listener", help="Empty: the system-wide list."),
    Field("position", "Place in the list", kind="number", help="1: tried first; empty: last."),
    Field("comment", "Comment", help="Never shown to clients."),
]  # fmt: skip


def _ref(page: Page) -> dict[str, str | None]:
    return {"pattern": page.form.get("pattern", ""), "listener": page.form.get("listener") or None}


@pages.page("/admin/access", methods=("GET", "POST"))
async def access(page: Page) -> bytes:
    """The rules in the order they are tried; a form to add one."""
    errors, values = FormError(), {}
    if page.request.method == b"POST":
        values = posted(ACCESS_FIELDS, page.form)
        try:
            body = to_model(access_api.NewAccessRule, ACCESS_FIELDS, page.form)
            made = await page.submit(access_api.add_access_rule, body, values=values,
                                     primary="pattern")  # fmt: skip
            verb = "added" if made["added"] else "changed"
            raise page.done(f"rule for {made['pattern']} {verb} ({made['where']} list, "
                            f"number {made['position']})", "/admin/access")  # fmt: skip
        except FormError as refused:
            errors = refused
    found = await page.call(access_api.list_access_rules, query=access_api.AccessQuery())
    return page.render("access.html", status=422 if values else 200, rules=found,
                       fields=ACCESS_FIELDS, values=values, errors=errors)  # fmt: skip


@pages.page("/admin/access/move", methods=("POST",))
async def move(page: Page) -> bytes:
    """Move one rule in its list."""
    body = access_api.AccessMove(**_ref(page), position=page.form.get("position", ""))
    moved = await page.call(access_api.move_access_rule, body)
    raise page.done(f"{moved['pattern']} is number {moved['position']} of the "
                    f"{moved['where']} list", "/admin/access")  # fmt: skip


@pages.page("/admin/access/delete", methods=("POST",))
async def delete(page: Page) -> bytes:
    """Delete one rule."""
    gone = await page.call(
        access_api.delete_access_rule, query=access_api.AccessRuleRef(**_ref(page))
    )
    raise page.done(f"rule for {gone['pattern']} deleted ({gone['where']} list)", "/admin/access")
