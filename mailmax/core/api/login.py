"""Log-in, log-out and "who am I" for administrators."""

from __future__ import annotations

from pydantic import BaseModel, Field

from mailmax.core.api.auth import SESSION_PREFIX, bearer
from mailmax.core.api.errors import ApiError
from mailmax.core.api.routing import Access, RequestContext, Router

router = Router("session")


class LoginRequest(BaseModel):
    """An administrator's user name (user@domain) and password."""

    username: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class AdminInfo(BaseModel):
    """An administrator and what they may administer."""

    address: str
    system: bool
    domains: list[str]


class LoginAnswer(BaseModel):
    """A session token to send as ``Authorization: Bearer <token>``."""

    token: str
    expires: float = Field(description="Unix time it expires unless used before.")
    admin: AdminInfo


@router.post(
    "/api/v1/login",
    summary="Log in with a password; get a session token",
    access=Access.PUBLIC,
    body=LoginRequest,
    response=LoginAnswer,
)
async def login(ctx: RequestContext) -> LoginAnswer:
    """Check the password of an administrator. Failed log-ins are throttled like mail
    log-ins (429 while blocked)."""
    token, expires, admin = await ctx.api.auth.login(
        ctx.client_ip, ctx.body.username, ctx.body.password
    )
    info = AdminInfo(address=admin.address, system=admin.system, domains=list(admin.domains))
    return LoginAnswer(token=token, expires=expires, admin=info)


@router.post("/api/v1/logout", summary="End this session token", access=Access.ANY)
async def logout(ctx: RequestContext) -> None:
    """End the session token of the request (API tokens are revoked with
    ``DELETE /api/v1/tokens/{id}`` or ``mailmax admin token revoke``)."""
    token = bearer(ctx.request)
    if not token.startswith(SESSION_PREFIX):
        raise ApiError(422, "this is an API token, not a session; revoke it instead")
    await ctx.api.auth.end_session(token)


@router.get("/api/v1/whoami", summary="The calling administrator", access=Access.ANY,
            response=AdminInfo)  # fmt: skip
async def whoami(ctx: RequestContext) -> AdminInfo:
    """Who the token belongs to and what they may administer."""
    actor = ctx.actor
    assert actor is not None
    return AdminInfo(address=actor.name, system=actor.system, domains=sorted(actor.domains))
