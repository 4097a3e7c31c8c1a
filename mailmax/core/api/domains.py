"""Domains and domain aliases."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mailmax.core.api.errors import ApiError
from mailmax.core.api.listing import ListQuery, Page, page
from mailmax.core.api.routing import Access, RequestContext, Router, domain_of
from mailmax.core.directory.api import BlankPasswordPolicy, DeleteMode, Domain, DomainType
from mailmax.core.services import domains as service

router = Router("domains")

DomainTypeName = Literal["normal", "etrn", "relay", "backup", "clustered"]
BlankPassword = Literal["system", "fill", "none", "disable"]


class DomainOut(BaseModel):
    """A domain and its settings."""

    name: str
    mail_dir: str
    type: DomainTypeName
    delivery_host: str
    backup_priority: int
    default_box_mb: int
    max_users: int
    max_message_size: int
    catch_all: str
    monitor: str
    blank_password: BlankPassword
    aliases: list[str]
    users: int | None = Field(None, description="How many users (in a single domain's answer).")


class DomainFields(BaseModel):
    """Settings of a domain; only those given are set."""

    model_config = ConfigDict(extra="forbid")

    type: DomainTypeName | None = Field(
        None, description="normal, etrn (held for ETRN), relay (all mail to delivery_host) or "
        "backup (backup MX, needs backup_priority); clustered is not enforced yet."
    )  # fmt: skip
    delivery_host: str | None = Field(None, description="Relay domains: the host all mail goes to.")
    backup_priority: int | None = Field(None, ge=0, description="Backup domains: MX preference.")
    catch_all: str | None = Field(None, description="User receiving mail for unknown names.")
    monitor: str | None = Field(None, description="User receiving a copy of all mail.")
    max_message_size: int | None = Field(None, ge=0, description="Largest message in bytes.")
    default_box_mb: int | None = Field(None, ge=0, description="Default mailbox size in MB.")
    max_users: int | None = Field(None, ge=0, description="Most users (0: unlimited).")
    blank_password: BlankPassword | None = Field(
        None, description="What a blank password means: system, fill, none or disable."
    )
    home_node: str | None = Field(None, description="Not enforced yet (refused).")
    session_send_mb: int | None = Field(None, description="Not enforced yet (refused).")
    session_send_messages: int | None = Field(None, description="Not enforced yet (refused).")
    over_limit_notice: str | None = Field(None, description="Not enforced yet (refused).")
    over_limit_threshold: int | None = Field(None, description="Not enforced yet (refused).")

    def fields(self) -> dict[str, Any]:
        """The Domain fields given, as the directory takes them."""
        given = self.model_dump(exclude_unset=True, exclude={"name", "mail_dir"})
        given = {k: v for k, v in given.items() if v is not None}
        if "type" in given:
            given["type"] = DomainType(given["type"])
        if "blank_password" in given:
            given["blank_password"] = BlankPasswordPolicy(given["blank_password"])
        return given


class DomainCreate(DomainFields):
    """A new domain."""

    name: str = Field(min_length=1, max_length=253)
    mail_dir: str | None = Field(None, description="Mail directory (default DATA_DIR/mail/NAME).")


class DomainChange(DomainFields):
    """Changes to a domain."""

    mail_dir: str | None = Field(
        None, description="New mail directory (existing mail is not moved)."
    )


class DomainQuery(ListQuery):
    """Filters of the domain list."""

    type: DomainTypeName | None = Field(None, description="Only domains of this type.")


class DeleteQuery(BaseModel):
    """What becomes of the mail of a deleted domain or user."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["database", "archive", "remove"] = Field(
        description="database: keep the mail directory; archive: rename it with the date; "
        "remove: delete it with all mail."
    )


class DomainAlias(BaseModel):
    """Another name of a domain."""

    alias: str
    domain: str


class NewDomainAlias(BaseModel):
    """The alias to add."""

    model_config = ConfigDict(extra="forbid")

    alias: str = Field(min_length=1, max_length=253)


def domain_out(domain: Domain, users: int | None = None) -> DomainOut:
    """The API form of ``domain``."""
    data = dataclasses.asdict(domain)
    data["aliases"] = list(domain.aliases)
    return DomainOut.model_validate({**data, "users": users})


_SORT = {
    "name": lambda d: d.name,
    "type": lambda d: (d.type.value, d.name),
    "max_users": lambda d: (d.max_users, d.name),
}


@router.get("/api/v1/domains", summary="List domains", access=Access.ANY, query=DomainQuery,
            response=Page[DomainOut])  # fmt: skip
async def list_domains(ctx: RequestContext) -> dict[str, Any]:
    """The domains the caller administers, filtered, sorted and paginated."""
    query: DomainQuery = ctx.query
    kind = DomainType(query.type) if query.type else None
    found = await ctx.run(
        service.list_domains, ctx.directory, ctx.actor, name_filter=query.q, type=kind
    )
    return page(found, query, _SORT, "name", domain_out)


@router.post("/api/v1/domains", summary="Add a domain", access=Access.SYSTEM, body=DomainCreate,
             response=DomainOut, status=201)  # fmt: skip
async def add_domain(ctx: RequestContext) -> DomainOut:
    """Add a domain and create its mail directory."""
    body: DomainCreate = ctx.body
    domain = await ctx.run(
        service.add_domain, ctx.directory, ctx.settings, ctx.actor, body.name, body.mail_dir,
        **body.fields(),
    )  # fmt: skip
    return domain_out(domain)


@router.get("/api/v1/domains/{name}", summary="Show a domain", access=domain_of("name"),
            response=DomainOut)  # fmt: skip
async def get_domain(ctx: RequestContext, name: str) -> DomainOut:
    """Every setting of a domain, with its number of users."""
    domain = await ctx.run(service.get_domain, ctx.directory, ctx.actor, name)
    users = await ctx.run(service.count_users, ctx.directory, domain)
    return domain_out(domain, users)


@router.patch("/api/v1/domains/{name}", summary="Change a domain", access=domain_of("name"),
              body=DomainChange, response=DomainOut)  # fmt: skip
async def edit_domain(ctx: RequestContext, name: str) -> DomainOut:
    """Change the settings given of a domain."""
    body: DomainChange = ctx.body
    fields = body.fields()
    if not fields and body.mail_dir is None:
        raise ApiError(422, "nothing to change; give at least one field")
    domain = await ctx.run(
        service.edit_domain, ctx.directory, ctx.settings, ctx.actor, name, body.mail_dir, **fields
    )
    return domain_out(domain)


@router.delete("/api/v1/domains/{name}", summary="Delete a domain", access=Access.SYSTEM,
               query=DeleteQuery)  # fmt: skip
async def delete_domain(ctx: RequestContext, name: str) -> None:
    """Delete a domain with its users and aliases; ``mode`` says what becomes of its mail."""
    await ctx.run(service.delete_domain, ctx.directory, ctx.actor, name, DeleteMode(ctx.query.mode))


@router.get("/api/v1/domain-aliases", summary="List domain aliases", access=Access.ANY,
            response=list[DomainAlias])  # fmt: skip
async def list_domain_aliases(ctx: RequestContext) -> list[dict[str, str]]:
    """The aliases of the domains the caller administers."""
    return await ctx.run(service.list_domain_aliases, ctx.directory, ctx.actor)


@router.post("/api/v1/domains/{name}/aliases", summary="Add a domain alias",
             access=domain_of("name"), body=NewDomainAlias, response=DomainAlias,
             status=201)  # fmt: skip
async def add_domain_alias(ctx: RequestContext, name: str) -> DomainAlias:
    """Make another name lead to the domain: mail to user@ALIAS goes to user@DOMAIN."""
    await ctx.run(service.add_domain_alias, ctx.directory, ctx.actor, ctx.body.alias, name)
    return DomainAlias(alias=ctx.body.alias.lower(), domain=name.lower())


@router.delete("/api/v1/domain-aliases/{alias}", summary="Remove a domain alias",
               access=Access.ANY)  # fmt: skip
async def remove_domain_alias(ctx: RequestContext, alias: str) -> None:
    """Remove a domain alias (the domain and its mail are untouched)."""
    await ctx.run(service.remove_domain_alias, ctx.directory, ctx.actor, alias)
