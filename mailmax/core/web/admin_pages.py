"""Administrators (grant and revoke rights) and the audit log."""

from __future__ import annotations

import datetime

from pydantic import BaseModel, ConfigDict, Field

from mailmax.core.api import admins as admins_api
from mailmax.core.api import server as server_api
from mailmax.core.web.app import Page, Pages
from mailmax.core.web.forms import Field as FormField
from mailmax.core.web.forms import FormError, posted, to_model

pages = Pages()

TOKEN_FIELDS = [
    FormField("admin", "For the administrator", required=True),
    FormField("name", "What it is for", required=True),
    FormField("days", "Expires after days", "number", help="Empty: until revoked."),
]
GRANT_FIELDS = [
    FormField("address", "User (name@domain)", required=True),
    FormField("system", "System administrator (everything)", "checkbox"),
    FormField("domains", "Or administrator of these domains (one a line)", "lines"),
]


class GrantForm(BaseModel):
    """The grant form: the user, and the API's rights."""

    model_config = ConfigDict(extra="forbid")

    address: str = Field(min_length=3, max_length=320)
    system: bool = False
    domains: list[str] = Field(default_factory=list, max_length=1000)


@pages.page("/admin/admins", methods=("GET", "POST"))
async def admins(page: Page) -> bytes:
    """Every administrator and their rights; grant rights to a user."""
    errors, values = FormError(), {}
    if page.request.method == b"POST":
        values = posted(GRANT_FIELDS, page.form)
        try:
            form = to_model(GrantForm, GRANT_FIELDS, page.form)
            rights = admins_api.Rights(system=form.system, domains=form.domains)
            done = await page.submit(admins_api.grant, rights, values=values, primary="address",
                                     address=form.address)  # fmt: skip
            raise page.done(f"{done.address} is now an administrator", "/admin/admins")
        except FormError as refused:
            errors = refused
        values = {k: "\n".join(v) if isinstance(v, list) else v for k, v in values.items()}
    found = await page.call(admins_api.list_admins)
    return page.render("admins.html", status=422 if values else 200, admins=found,
                       fields=GRANT_FIELDS, values=values, errors=errors)  # fmt: skip


@pages.page("/admin/admins/<address>/revoke", methods=("POST",))
async def revoke(page: Page, address: str) -> bytes:
    """Take every right (and every API token) from an administrator."""
    await page.call(admins_api.revoke, admins_api.Rights(), address=address)
    raise page.done(f"{address} is no longer an administrator", "/admin/admins")


@pages.page("/admin/audit")
async def audit(page: Page) -> bytes:
    """The latest recorded changes: who, what, when, from where."""
    query = admins_api.AuditQuery(who=page.form.get("who", "").strip(), limit=200)
    entries = await page.call(admins_api.audit_log, query=query)
    for entry in entries:
        moment = datetime.datetime.fromtimestamp(entry["at"], datetime.UTC)
        entry["when"] = moment.isoformat(sep=" ", timespec="seconds")
    return page.render("audit.html", entries=entries, who=query.who)


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(sep=" ", timespec="minutes")


@pages.page("/admin/tokens", methods=("GET", "POST"))
async def tokens(page: Page) -> bytes:
    """API tokens (a domain administrator: their own); make one, shown this once."""
    assert page.actor is not None
    errors, values, made = FormError(), {"admin": page.actor.name}, None
    if page.request.method == b"POST":
        values = posted(TOKEN_FIELDS, page.form)
        try:
            body = to_model(admins_api.NewToken, TOKEN_FIELDS, page.form)
            made = await page.submit(admins_api.create_token, body, values=values,
                                     primary="admin")  # fmt: skip
        except FormError as refused:
            errors = refused
    found = await page.call(admins_api.list_tokens, query=admins_api.TokenQuery())
    for token in found:
        token["created_at"], token["expires_at"] = _when(token["created"]), _when(token["expires"])
        token["last_used_at"] = _when(token["last_used"])
    status = 422 if errors.fields or errors.message else 201 if made else 200
    return page.render("tokens.html", status=status, tokens=found, made=made,
                       fields=TOKEN_FIELDS, values=values, errors=errors)  # fmt: skip


@pages.page("/admin/tokens/<token_id>/revoke", methods=("POST",))
async def revoke_token(page: Page, token_id: str) -> bytes:
    """Revoke an API token; it stops working at once."""
    await page.call(admins_api.revoke_token, token_id=token_id)
    raise page.done(f"token {token_id} revoked", "/admin/tokens")


@pages.page("/admin/blocked", methods=("GET", "POST"))
async def blocked(page: Page) -> bytes:
    """Failed-login blocks and delays in force; forget those of an address or account."""
    if page.request.method == b"POST":
        target = page.form.get("target", "")
        answer = await page.call(server_api.auth_unblock, target=target)
        raise page.done(f"{answer.records} failed-login records of {target} forgotten",
                        "/admin/blocked")  # fmt: skip
    found = await page.call(server_api.auth_blocked)
    return page.render("blocked.html", blocked=found)
