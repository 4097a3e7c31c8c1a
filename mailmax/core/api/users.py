"""Users, their passwords, forwarding and user aliases."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mailmax.core.api.domains import DeleteQuery
from mailmax.core.api.errors import ApiError
from mailmax.core.api.listing import ListQuery, Page, page
from mailmax.core.api.routing import Access, RequestContext, Router, domain_of
from mailmax.core.directory.admins import AdminStore
from mailmax.core.directory.api import AccountType, DeleteMode, User
from mailmax.core.services import aliases as alias_service
from mailmax.core.services import forwarding, usermove
from mailmax.core.services import users as service

router = Router("users")

AccountTypeName = Literal["normal", "disabled", "spamtrap"]


class UserOut(BaseModel):
    """A user (never a password or its hash)."""

    address: str
    name: str
    domain: str
    first_name: str
    last_name: str
    account_type: AccountTypeName
    smtp_auth: bool = Field(description="Whether SMTP AUTH is allowed.")
    disk_limit_mb: int
    max_message_size: int
    virus_check: bool
    daily_send_messages: int = Field(description="Messages the user may send per UTC day.")
    daily_send_mb: int = Field(description="MB the user may send per UTC day.")
    daily_limits_enabled: bool = Field(description="Whether the daily limits apply.")
    home_node: str = Field("", description="Clustered domains: the node holding the mailbox.")
    password: Literal["set", "blank"]
    clear_password_kept: bool
    admin: bool | None = Field(None, description="Whether the user is an administrator.")


class UserFields(BaseModel):
    """Settings of a user; only those given are set."""

    model_config = ConfigDict(extra="forbid")

    first_name: str | None = Field(None, max_length=255)
    last_name: str | None = Field(None, max_length=255)
    account_type: AccountTypeName | None = Field(
        None, description="normal, disabled (no login, mail refused) or spamtrap."
    )
    smtp_auth: bool | None = Field(None, description="Allow or refuse SMTP AUTH.")
    disk_limit_mb: int | None = Field(None, ge=0, description="Mailbox limit in MB (0: default).")
    max_message_size: int | None = Field(None, ge=0, description="Largest message in bytes.")
    virus_check: bool | None = Field(None, description="The antivirus plugin for this user.")
    daily_send_messages: int | None = Field(
        None, ge=0, description="Messages per UTC day (0: no limit; a number turns the limits on)."
    )
    daily_send_mb: int | None = Field(
        None, ge=0, description="MB per UTC day (0: no limit; a number turns the limits on)."
    )
    daily_limits_enabled: bool | None = Field(
        None, description="Switch the daily sending limits on or off (the numbers are kept)."
    )

    def fields(self) -> dict[str, Any]:
        """The User fields given, as the directory takes them."""
        given = self.model_dump(exclude_unset=True, exclude={"address", "password", "keep_clear"})
        given = {k: v for k, v in given.items() if v is not None}
        if "account_type" in given:
            given["account_type"] = AccountType(given["account_type"])
        if "smtp_auth" in given:
            given["smtp_auth_disabled"] = not given.pop("smtp_auth")
        return given


class UserCreate(UserFields):
    """A new user."""

    address: str = Field(min_length=3, max_length=320, description="name@domain")
    password: str | None = Field(
        None, max_length=1024, description="None: blank (the domain's policy applies)."
    )
    keep_clear: bool = Field(False, description="Also keep the clear text (APOP, CRAM-MD5).")


class PasswordChange(BaseModel):
    """A new password."""

    model_config = ConfigDict(extra="forbid")

    password: str | None = Field(max_length=1024, description="None blanks the password.")
    keep_clear: bool | None = Field(None, description="Keep (or drop) the clear text.")


class UserQuery(ListQuery):
    """Filters of the user list."""

    domain: str | None = Field(None, description="Only users of this domain.")
    type: AccountTypeName | None = Field(None, description="Only users of this account type.")
    smtp_auth: bool | None = Field(None, description="Only users with SMTP AUTH on (or off).")
    admin: bool | None = Field(None, description="Only administrators (or non-administrators).")


class Forward(BaseModel):
    """A user's forwarding."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    targets: list[str] = Field(default_factory=list, max_length=100)
    keep_local_copy: bool = True


class ForwardOut(Forward):
    """A user's forwarding, with the user's address."""

    address: str


class Alias(BaseModel):
    """A user alias and where its mail goes."""

    address: str
    targets: list[str]


class AliasTargets(BaseModel):
    """The targets of an alias: users or aliases here (bare names are in the alias's domain)
    or remote addresses."""

    model_config = ConfigDict(extra="forbid")

    targets: list[str] = Field(min_length=1, max_length=100)


class NewAlias(AliasTargets):
    """A new user alias."""

    address: str = Field(min_length=3, max_length=320)


def user_out(user: User, admin: bool | None = None) -> UserOut:
    """The API form of ``user``."""
    return UserOut(
        address=user.address, name=user.name, domain=user.domain, first_name=user.first_name,
        last_name=user.last_name, account_type=user.account_type.value,
        smtp_auth=not user.smtp_auth_disabled, disk_limit_mb=user.disk_limit_mb,
        max_message_size=user.max_message_size, virus_check=user.virus_check,
        daily_send_messages=user.daily_send_messages, daily_send_mb=user.daily_send_mb,
        daily_limits_enabled=user.daily_limits_enabled, home_node=user.home_node,
        password="set" if user.has_password else "blank",
        clear_password_kept=user.clear_password_kept, admin=admin,
    )  # fmt: skip


def _admins(directory: Any) -> set[str]:
    return {a.address for a in AdminStore(directory).list_admins()}


_SORT = {
    "address": lambda u: (u.domain, u.name),
    "name": lambda u: (u.name, u.domain),
    "type": lambda u: (u.account_type.value, u.domain, u.name),
    "disk_limit_mb": lambda u: (u.disk_limit_mb, u.domain, u.name),
}


@router.get("/api/v1/users", summary="List users", access=Access.ANY, query=UserQuery,
            response=Page[UserOut])  # fmt: skip
async def list_users(ctx: RequestContext) -> dict[str, Any]:
    """Users of the domains the caller administers: filtered by name, domain, account type,
    SMTP AUTH (a disabled service) and administrator flag; sorted; paginated."""
    query: UserQuery = ctx.query
    found = await ctx.run(
        service.list_users, ctx.directory, ctx.actor, domain=query.domain, name_filter=query.q,
        account_type=AccountType(query.type) if query.type else None,
    )  # fmt: skip
    admins = await ctx.run(_admins, ctx.directory)
    if query.smtp_auth is not None:
        found = [u for u in found if (not u.smtp_auth_disabled) is query.smtp_auth]
    if query.admin is not None:
        found = [u for u in found if (u.address in admins) is query.admin]
    return page(found, query, _SORT, "address", lambda u: user_out(u, u.address in admins))


@router.post("/api/v1/users", summary="Add a user", access=Access.ANY, body=UserCreate,
             response=UserOut, status=201)  # fmt: skip
async def add_user(ctx: RequestContext) -> UserOut:
    """Add a user to a domain the caller administers."""
    body: UserCreate = ctx.body
    user = await ctx.run(
        service.add_user, ctx.directory, ctx.actor, body.address, body.password or None,
        keep_clear=body.keep_clear, **body.fields(),
    )  # fmt: skip
    return user_out(user)


@router.get("/api/v1/users/{address}", summary="Show a user", access=domain_of("address"),
            response=UserOut)  # fmt: skip
async def get_user(ctx: RequestContext, address: str) -> UserOut:
    """Every setting of a user (never the password)."""
    user = await ctx.run(service.get_user, ctx.directory, ctx.actor, address)
    admins = await ctx.run(_admins, ctx.directory)
    return user_out(user, user.address in admins)


@router.patch("/api/v1/users/{address}", summary="Change a user", access=domain_of("address"),
              body=UserFields, response=UserOut)  # fmt: skip
async def edit_user(ctx: RequestContext, address: str) -> UserOut:
    """Change the settings given of a user."""
    fields = ctx.body.fields()
    if not fields:
        raise ApiError(422, "nothing to change; give at least one field")
    user = await ctx.run(service.edit_user, ctx.directory, ctx.actor, address, **fields)
    return user_out(user)


@router.put("/api/v1/users/{address}/password", summary="Set a user's password",
            access=domain_of("address"), body=PasswordChange)  # fmt: skip
async def set_password(ctx: RequestContext, address: str) -> None:
    """Set the password (null blanks it: the domain's blank-password policy applies)."""
    body: PasswordChange = ctx.body
    await ctx.run(
        service.set_password, ctx.directory, ctx.actor, address, body.password or None,
        keep_clear=body.keep_clear,
    )  # fmt: skip


@router.delete("/api/v1/users/{address}", summary="Delete a user", access=domain_of("address"),
               query=DeleteQuery)  # fmt: skip
async def delete_user(ctx: RequestContext, address: str) -> None:
    """Delete a user; ``mode`` says what becomes of its mail."""
    mode = DeleteMode(ctx.query.mode)
    await ctx.run(service.delete_user, ctx.directory, ctx.actor, address, mode)


class Unlocked(BaseModel):
    """Whether a mailbox lock was removed, and whose it was."""

    message: str
    address: str
    unlocked: bool
    pid: int | None = None
    host: str | None = None
    since: float | None = None
    stale: bool | None = None


@router.post("/api/v1/users/{address}/unlock", summary="Remove a mailbox's POP3 lock",
             access=domain_of("address"), response=Unlocked)  # fmt: skip
async def unlock_mailbox(ctx: RequestContext, address: str) -> Unlocked:
    """Remove the POP3 lock on the user's mailbox (a session hung in the server keeps running
    but no longer keeps other sessions out)."""
    message, details = await ctx.run(service.unlock_mailbox, ctx.directory, ctx.actor, address)
    return Unlocked(message=message, **details)


class MoveTo(BaseModel):
    """Where a mailbox goes."""

    model_config = ConfigDict(extra="forbid")

    node: str = Field(min_length=1, max_length=255, description="A node of [cluster.nodes].")


class Moved(BaseModel):
    """What a mailbox move did."""

    message: str
    address: str
    from_node: str
    to_node: str
    files: int = Field(description="Files sent (messages, folders, IMAP indexes).")
    old_copy: str = Field(description="Where the old copy was renamed to on this node.")


@router.post("/api/v1/users/{address}/move", summary="Move a mailbox to another cluster node",
             access=Access.SYSTEM, body=MoveTo, response=Moved)  # fmt: skip
async def move_user(ctx: RequestContext, address: str) -> Moved:
    """Move the user's mailbox from this node to ``node`` (clustered domains; call it on the
    node holding the mailbox). Answers when the move is done; mail arriving meanwhile waits
    in the queues, log-ins get a temporary error. Refused when no cluster is configured."""
    message, report = await ctx.run(
        usermove.move_user, ctx.settings, ctx.directory, ctx.actor, address, ctx.body.node
    )
    return Moved(message=message, **report)


@router.get("/api/v1/users/{address}/forward", summary="A user's forwarding",
            access=domain_of("address"), response=ForwardOut)  # fmt: skip
async def get_forward(ctx: RequestContext, address: str) -> dict[str, Any]:
    """Where the user's mail is forwarded (``enabled`` false when it is not)."""
    return await ctx.run(forwarding.get_forward, ctx.settings, ctx.directory, ctx.actor, address)


@router.put("/api/v1/users/{address}/forward", summary="Set a user's forwarding",
            access=domain_of("address"), body=Forward, response=ForwardOut)  # fmt: skip
async def set_forward(ctx: RequestContext, address: str) -> dict[str, Any]:
    """Forward the user's mail to the targets (full addresses, local or remote)."""
    body: Forward = ctx.body
    return await ctx.run(
        forwarding.set_forward, ctx.settings, ctx.directory, ctx.actor, address, body.targets,
        enabled=body.enabled, keep_local_copy=body.keep_local_copy,
    )  # fmt: skip


@router.delete("/api/v1/users/{address}/forward", summary="Stop forwarding a user's mail",
               access=domain_of("address"))  # fmt: skip
async def delete_forward(ctx: RequestContext, address: str) -> None:
    """Remove the user's forwarding."""
    await ctx.run(forwarding.delete_forward, ctx.settings, ctx.directory, ctx.actor, address)


@router.get("/api/v1/aliases", summary="List user aliases", access=Access.ANY,
            query=UserQuery, response=Page[Alias])  # fmt: skip
async def list_aliases(ctx: RequestContext) -> dict[str, Any]:
    """User aliases of the domains the caller administers (``domain`` and ``q`` filter)."""
    query: UserQuery = ctx.query
    found = await ctx.run(alias_service.list_aliases, ctx.directory, ctx.actor, query.domain)
    if query.q:
        found = [(a, t) for a, t in found if query.q.lower() in a.partition("@")[0]]
    return page(found, query, {"address": lambda a: a[0]}, "address",
                lambda a: Alias(address=a[0], targets=a[1]))  # fmt: skip


@router.post("/api/v1/aliases", summary="Add a user alias", access=Access.ANY, body=NewAlias,
             response=Alias, status=201)  # fmt: skip
async def add_alias(ctx: RequestContext) -> Alias:
    """Add an alias delivering to its targets (loops are refused)."""
    body: NewAlias = ctx.body
    await ctx.run(alias_service.add_alias, ctx.directory, ctx.actor, body.address, body.targets)
    targets = await ctx.run(alias_service.get_alias, ctx.directory, ctx.actor, body.address)
    return Alias(address=body.address.lower(), targets=targets)


@router.get("/api/v1/aliases/{address}", summary="Show a user alias",
            access=domain_of("address"), response=Alias)  # fmt: skip
async def get_alias(ctx: RequestContext, address: str) -> Alias:
    """The targets of an alias."""
    targets = await ctx.run(alias_service.get_alias, ctx.directory, ctx.actor, address)
    return Alias(address=address.lower(), targets=targets)


@router.put("/api/v1/aliases/{address}", summary="Replace a user alias's targets",
            access=domain_of("address"), body=AliasTargets, response=Alias)  # fmt: skip
async def edit_alias(ctx: RequestContext, address: str) -> Alias:
    """Replace the targets of an alias."""
    await ctx.run(alias_service.edit_alias, ctx.directory, ctx.actor, address, ctx.body.targets)
    return await get_alias(ctx, address)


@router.delete("/api/v1/aliases/{address}", summary="Delete a user alias",
               access=domain_of("address"))  # fmt: skip
async def delete_alias(ctx: RequestContext, address: str) -> None:
    """Delete an alias (its targets are untouched)."""
    await ctx.run(alias_service.delete_alias, ctx.directory, ctx.actor, address)
