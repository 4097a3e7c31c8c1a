"""User aliases and domain aliases."""

from __future__ import annotations

from mailmax.core.api import domains as domains_api
from mailmax.core.api import users as users_api
from mailmax.core.web.app import Page, Pages
from mailmax.core.web.directory_pages import list_query
from mailmax.core.web.forms import Field, FormError, posted, to_model

pages = Pages()

ALIAS_FIELDS = [
    Field("address", "Alias address (name@domain)", required=True),
    Field("targets", "Delivers to (one a line)", "lines", required=True,
          help="Users or aliases here (a bare name is in the alias's domain) or remote "
          "addresses."),
]  # fmt: skip
TARGET_FIELDS = ALIAS_FIELDS[1:]
DOMAIN_ALIAS_FIELDS = [
    Field("domain", "Domain", required=True),
    Field("alias", "Other name of the domain", required=True),
]


@pages.page("/admin/aliases")
async def alias_list(page: Page) -> bytes:
    """User aliases with filter and paging."""
    query = list_query(page, users_api.UserQuery)
    found = await page.call(users_api.list_aliases, query=query)
    return page.render("aliases.html", result=found, query=query)


@pages.page("/admin/aliases/new", methods=("GET", "POST"))
async def alias_new(page: Page) -> bytes:
    """Add a user alias."""
    values = posted(ALIAS_FIELDS, page.form)
    errors = FormError()
    if page.request.method == b"POST":
        try:
            body = to_model(users_api.NewAlias, ALIAS_FIELDS, page.form)
            made = await page.submit(users_api.add_alias, body, values=values, primary="address")
            raise page.done(f"alias {made.address} added", "/admin/aliases")
        except FormError as refused:
            errors = refused
    values = {k: "\n".join(v) if isinstance(v, list) else v for k, v in values.items()}
    return page.render("edit.html", status=422 if errors.fields or errors.message else 200,
                       title="New alias", fields=ALIAS_FIELDS, values=values,
                       errors=errors)  # fmt: skip


@pages.page("/admin/aliases/<address>", methods=("GET", "POST"))
async def alias_edit(page: Page, address: str) -> bytes:
    """Change where an alias delivers."""
    errors = FormError()
    if page.request.method == b"POST":
        values = posted(TARGET_FIELDS, page.form)
        try:
            body = to_model(users_api.AliasTargets, TARGET_FIELDS, page.form)
            await page.submit(users_api.edit_alias, body, values=values, address=address)
            raise page.done(f"alias {address} changed", "/admin/aliases")
        except FormError as refused:
            errors = refused
    alias = await page.call(users_api.get_alias, address=address)
    return page.render("edit.html", status=422 if errors.fields or errors.message else 200,
                       title=f"Alias {alias.address}", fields=TARGET_FIELDS,
                       values={"targets": "\n".join(alias.targets)}, errors=errors,
                       delete=f"/admin/aliases/{alias.address}/delete")  # fmt: skip


@pages.page("/admin/aliases/<address>/delete", methods=("GET", "POST"))
async def alias_delete(page: Page, address: str) -> bytes:
    """Delete an alias after a confirmation."""
    alias = await page.call(users_api.get_alias, address=address)
    if page.request.method == b"POST" and page.form.get("confirm") == alias.address:
        await page.call(users_api.delete_alias, address=address)
        raise page.done(f"alias {alias.address} deleted", "/admin/aliases")
    missing = page.request.method == b"POST"
    return page.render("delete.html", status=422 if missing else 200, kind="alias",
                       name=alias.address, modes={}, missing=missing,
                       note="Its targets are not touched.")  # fmt: skip


@pages.page("/admin/domain-aliases", methods=("GET", "POST"))
async def domain_aliases(page: Page) -> bytes:
    """Domain aliases, and a form to add one."""
    errors, values = FormError(), {}
    if page.request.method == b"POST":
        values = posted(DOMAIN_ALIAS_FIELDS, page.form)
        try:
            body = to_model(domains_api.NewDomainAlias, DOMAIN_ALIAS_FIELDS[1:], page.form)
            await page.submit(domains_api.add_domain_alias, body, values=values,
                              primary="alias", name=values.get("domain", ""))  # fmt: skip
            raise page.done(f"{body.alias} now leads to {values['domain']}",
                            "/admin/domain-aliases")  # fmt: skip
        except FormError as refused:
            errors = refused
    found = await page.call(domains_api.list_domain_aliases)
    return page.render("domain_aliases.html", status=422 if values else 200, aliases=found,
                       fields=DOMAIN_ALIAS_FIELDS, values=values, errors=errors)  # fmt: skip


@pages.page("/admin/domain-aliases/<alias>/delete", methods=("GET", "POST"))
async def domain_alias_delete(page: Page, alias: str) -> bytes:
    """Remove a domain alias after a confirmation."""
    if page.request.method == b"POST" and page.form.get("confirm") == alias:
        await page.call(domains_api.remove_domain_alias, alias=alias)
        raise page.done(f"domain alias {alias} removed", "/admin/domain-aliases")
    missing = page.request.method == b"POST"
    return page.render("delete.html", status=422 if missing else 200, kind="domain alias",
                       name=alias, modes={}, missing=missing,
                       note="The domain and its mail are not touched.")  # fmt: skip
