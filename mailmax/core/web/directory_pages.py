"""Domains (with catch-all and monitor) and users (with password and forwarding)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from mailmax.core.api import autoreply as autoreply_api
from mailmax.core.api import domains as domains_api
from mailmax.core.api import observe as observe_api
from mailmax.core.api import users as users_api
from mailmax.core.api.errors import ApiError, describe_validation
from mailmax.core.services.usermove import cluster_nodes
from mailmax.core.web.app import Page, Pages
from mailmax.core.web.forms import Field, FormError, posted, to_model, validate

pages = Pages()

#: Rows on one page of a list.
PAGE_SIZE = 25

DOMAIN_TYPES = ("normal", "etrn", "relay", "backup")
DOMAIN_FIELDS = [
    Field("type", "Type", "select", DOMAIN_TYPES,
          "etrn: held until the client asks (ETRN); relay: all mail to the delivery host; "
          "backup: backup MX"),
    Field("delivery_host", "Delivery host", help="Relay domains: the host all mail goes to."),
    Field("backup_priority", "Backup MX preference", "number"),
    Field("catch_all", "Catch-all user", help="User receiving mail for unknown names."),
    Field("monitor", "Monitor user", help="User receiving a copy of all mail of the domain."),
    Field("max_message_size", "Largest message (bytes)", "number"),
    Field("default_box_mb", "Default mailbox size (MB)", "number"),
    Field("max_users", "Most users (0: unlimited)", "number"),
    Field("blank_password", "A blank password means", "select",
          ("system", "fill", "none", "disable")),
    Field("mail_dir", "Mail directory", help="Default: DATA_DIR/mail/NAME."),
]  # fmt: skip
NEW_DOMAIN_FIELDS = [Field("name", "Domain name", required=True), *DOMAIN_FIELDS]

USER_FIELDS = [
    Field("first_name", "First name"),
    Field("last_name", "Last name"),
    Field("account_type", "Account", "select", ("normal", "disabled", "spamtrap")),
    Field("smtp_auth", "May send with SMTP AUTH", "checkbox"),
    Field("disk_limit_mb", "Mailbox limit (MB, 0: the domain's default)", "number"),
    Field("max_message_size", "Largest message (bytes)", "number"),
    Field("virus_check", "Scan mail for viruses", "checkbox"),
]
NEW_USER_FIELDS = [
    Field("address", "Address (name@domain)", required=True),
    Field("password", "Password", "password", help="Empty: the domain's blank-password rule."),
    Field("keep_clear", "Keep the clear text (APOP, CRAM-MD5)", "checkbox"),
    *USER_FIELDS,
]
PASSWORD_FIELDS = [
    Field("password", "New password", "password", help="Empty: a blank password."),
    Field("keep_clear", "Keep the clear text (APOP, CRAM-MD5)", "checkbox"),
]
FORWARD_FIELDS = [
    Field("enabled", "Forward this user's mail", "checkbox"),
    Field("targets", "Forward to (one address a line)", "lines"),
    Field("keep_local_copy", "Keep a copy here", "checkbox"),
]
AUTOREPLY_FIELDS = [
    Field("subject", "Subject", help='Empty: "Auto: " and the subject of the mail answered.'),
    Field("text", "Text of the replies"),
    Field("from_address", "From address", help="Empty: the user's own address."),
    Field("real_name", "Real name", help="Shown with the from address."),
    Field("start_date", "First day", help="YYYY-MM-DD; empty: from now."),
    Field("end_date", "Last day", help="YYYY-MM-DD; empty: until switched off."),
    Field("days", "Days before answering the same sender again", "number"),
]


def move_fields(nodes: list[str]) -> list[Field]:
    """The mailbox move form of a cluster of ``nodes``."""
    return [Field("node", "Node to move the mailbox to", "select", tuple(nodes),
                  "Run on the node holding the mailbox; the page answers when the move is "
                  "done. Mail arriving meanwhile waits in the queues.")]  # fmt: skip


DELETE_MODES = {
    "database": "Only from the database: the mail stays on disk",
    "archive": "Archive the mail (the directory is renamed with the date)",
    "remove": "Remove the mail for good",
}


def list_query(page: Page, model: type[BaseModel]) -> Any:
    """The list filters of the page's query string, as the API's query model."""
    return list_query_of(model, {k: v for k, v in page.form.items() if v})


def list_query_of(model: type[BaseModel], given: dict[str, Any]) -> Any:
    """The API's list query ``model`` from ``given`` (a page of PAGE_SIZE by default)."""
    values = {k: v for k, v in given.items() if k in model.model_fields}
    values.setdefault("limit", str(PAGE_SIZE))
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ApiError(422, f"bad filter: {describe_validation(exc)}") from None


def form_values(fields: list[Field], source: Any) -> dict[str, Any]:
    """What the fields of a form show for an existing object."""
    shown = {}
    for f in fields:
        value = getattr(source, f.name, None)
        shown[f.name] = "\n".join(value) if isinstance(value, list) else value
    return shown


# ---------------------------------------------------------------------- domains
@pages.page("/admin/domains")
async def domain_list(page: Page) -> bytes:
    """Domains with filter, sort and paging."""
    query = list_query(page, domains_api.DomainQuery)
    found = await page.call(domains_api.list_domains, query=query)
    return page.render("domains.html", result=found, query=query, types=DOMAIN_TYPES,
                       sorts=("name", "type", "max_users"))  # fmt: skip


@pages.page("/admin/domains/new", methods=("GET", "POST"))
async def domain_new(page: Page) -> bytes:
    """Add a domain."""
    values = posted(NEW_DOMAIN_FIELDS, page.form)
    if page.request.method == b"POST":
        try:
            body = to_model(domains_api.DomainCreate, NEW_DOMAIN_FIELDS, page.form)
            made = await page.submit(domains_api.add_domain, body, values=values, primary="name")
            raise page.done(f"domain {made.name} added", f"/admin/domains/{made.name}")
        except FormError as errors:
            return page.render("edit.html", status=422, title="New domain",
                               fields=NEW_DOMAIN_FIELDS, values=values, errors=errors)  # fmt: skip
    return page.render("edit.html", title="New domain", fields=NEW_DOMAIN_FIELDS,
                       values={"type": "normal"}, errors=FormError())  # fmt: skip


@pages.page("/admin/domains/<name>", methods=("GET", "POST"))
async def domain_edit(page: Page, name: str) -> bytes:
    """A domain's settings, changed in place."""
    errors, values = FormError(), None
    if page.request.method == b"POST":
        values = posted(DOMAIN_FIELDS, page.form)
        try:
            body = to_model(domains_api.DomainChange, DOMAIN_FIELDS, page.form)
            await page.submit(domains_api.edit_domain, body, values=values, name=name)
            raise page.done(f"domain {name} changed", f"/admin/domains/{name}")
        except FormError as refused:
            errors = refused
    domain = await page.call(domains_api.get_domain, name=name)
    aliases = [a for a in domain.aliases]
    return page.render("domain.html", status=422 if values is not None else 200, domain=domain,
                       fields=DOMAIN_FIELDS, values=values or form_values(DOMAIN_FIELDS, domain),
                       errors=errors, aliases=aliases)  # fmt: skip


@pages.page("/admin/domains/<name>/delete", methods=("GET", "POST"))
async def domain_delete(page: Page, name: str) -> bytes:
    """Delete a domain after a confirmation, choosing what becomes of its mail."""
    domain = await page.call(domains_api.get_domain, name=name)
    if page.request.method == b"POST" and page.form.get("confirm") == domain.name:
        query = domains_api.DeleteQuery(mode=page.form.get("mode", ""))
        await page.call(domains_api.delete_domain, query=query, name=name)
        raise page.done(f"domain {domain.name} deleted", "/admin/domains")
    missing = page.request.method == b"POST"
    note = f"{domain.users} users and their aliases are deleted with it."
    return page.render("delete.html", status=422 if missing else 200, kind="domain",
                       name=domain.name, modes=DELETE_MODES, missing=missing,
                       note=note)  # fmt: skip


# ---------------------------------------------------------------------- users
@pages.page("/admin/users")
async def user_list(page: Page) -> bytes:
    """Users with filter, sort and paging."""
    query = list_query(page, users_api.UserQuery)
    found = await page.call(users_api.list_users, query=query)
    return page.render("users.html", result=found, query=query,
                       sorts=("address", "name", "type", "disk_limit_mb"))  # fmt: skip


@pages.page("/admin/users/new", methods=("GET", "POST"))
async def user_new(page: Page) -> bytes:
    """Add a user."""
    if page.request.method == b"POST":
        values = posted(NEW_USER_FIELDS, page.form)
        try:
            body = to_model(users_api.UserCreate, NEW_USER_FIELDS, page.form)
            made = await page.submit(users_api.add_user, body, values=values, primary="address")
            raise page.done(f"user {made.address} added", f"/admin/users/{made.address}")
        except FormError as errors:
            values.pop("password", None)
            return page.render("edit.html", status=422, title="New user",
                               fields=NEW_USER_FIELDS, values=values, errors=errors)  # fmt: skip
    start = {"account_type": "normal", "smtp_auth": True, "virus_check": True}
    if page.form.get("domain"):
        start["address"] = "@" + page.form["domain"]
    return page.render("edit.html", title="New user", fields=NEW_USER_FIELDS, values=start,
                       errors=FormError())  # fmt: skip


async def _user_page(page: Page, address: str, status: int = 200, **forms: Any) -> bytes:
    user = await page.call(users_api.get_user, address=address)
    forward = await page.call(users_api.get_forward, address=address)
    shown = {
        "settings": (USER_FIELDS, form_values(USER_FIELDS, user), FormError()),
        "password": (PASSWORD_FIELDS, {"keep_clear": user.clear_password_kept}, FormError()),
        "forward": (FORWARD_FIELDS, form_values(FORWARD_FIELDS, _Obj(forward)), FormError()),
    }
    replying = await page.call(autoreply_api.show_autoreply, address=address)
    shown["autoreply"] = (AUTOREPLY_FIELDS, replying["settings"], FormError())
    nodes = cluster_nodes(page.api.service.settings) if page.actor.system else []
    if nodes:
        shown["move"] = (move_fields(nodes), {"node": user.home_node}, FormError())
    shown.update(forms)
    logins = await page.call(observe_api.logins, address=address)
    return page.render("user.html", status=status, user=user, forms=shown, logins=logins,
                       autoreply=replying)  # fmt: skip


class _Obj:
    """Attribute access to a dict (for :func:`form_values`)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data)


@pages.page("/admin/users/<address>")
async def user_show(page: Page, address: str) -> bytes:
    """A user's settings, password, forwarding and recorded log-ins."""
    return await _user_page(page, address)


_USER_FORMS = {
    "settings": (USER_FIELDS, users_api.UserFields, users_api.edit_user, "settings changed"),
    "password": (PASSWORD_FIELDS, users_api.PasswordChange, users_api.set_password,
                 "password set"),
    "forward": (FORWARD_FIELDS, users_api.Forward, users_api.set_forward, "forwarding set"),
    "autoreply": (AUTOREPLY_FIELDS, autoreply_api.AutoreplyOn, autoreply_api.set_autoreply,
                  "auto-responder on"),
}  # fmt: skip


@pages.page("/admin/users/<address>/<form>", methods=("POST",))
async def user_change(page: Page, address: str, form: str) -> bytes:
    """Change a user's settings, password, forwarding or auto-responder."""
    if form == "autoreply-off":
        await page.call(autoreply_api.autoreply_off, address=address)
        raise page.done(f"{address}: auto-responder off", f"/admin/users/{address}")
    if form == "move":
        return await _move_user(page, address)
    if form not in _USER_FORMS:
        raise ApiError(404, f"no such form: {form}")
    fields, model, handler, done = _USER_FORMS[form]
    values = posted(fields, page.form)
    if form == "password":
        values.setdefault("password", None)  # empty: a blank password
    try:
        body = validate(model, values)
        await page.submit(handler, body, values=values, address=address)
    except FormError as errors:
        values.pop("password", None)
        return await _user_page(page, address, 422, **{form: (fields, values, errors)})
    raise page.done(f"{address}: {done}", f"/admin/users/{address}")


async def _move_user(page: Page, address: str) -> bytes:
    fields = move_fields(cluster_nodes(page.api.service.settings))
    values = posted(fields, page.form)
    try:
        body = validate(users_api.MoveTo, values)
        moved = await page.submit(users_api.move_user, body, values=values, primary="node",
                                  address=address)  # fmt: skip
    except FormError as errors:
        return await _user_page(page, address, 422, move=(fields, values, errors))
    raise page.done(moved.message, f"/admin/users/{moved.address}")


@pages.page("/admin/users/<address>/delete", methods=("GET", "POST"))
async def user_delete(page: Page, address: str) -> bytes:
    """Delete a user after a confirmation, choosing what becomes of its mail."""
    user = await page.call(users_api.get_user, address=address)
    if page.request.method == b"POST" and page.form.get("confirm") == user.address:
        query = domains_api.DeleteQuery(mode=page.form.get("mode", ""))
        await page.call(users_api.delete_user, query=query, address=address)
        raise page.done(f"user {user.address} deleted", "/admin/users")
    missing = page.request.method == b"POST"
    return page.render("delete.html", status=422 if missing else 200, kind="user",
                       name=user.address, modes=DELETE_MODES, missing=missing, note="")  # fmt: skip
