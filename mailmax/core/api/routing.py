"""Routes of the admin API: who may call them, what they take and give (see the package text)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

if TYPE_CHECKING:
    from mailmax.core.api.app import AdminApi
    from mailmax.core.services.actor import Actor


class Access(enum.Enum):
    """Who may call a route (see also :func:`domain_of`)."""

    PUBLIC = "public"  # no token; the handler checks what it needs
    ANY = "any"  # any administrator; services limit domain administrators
    SYSTEM = "system"  # system administrators only


@dataclasses.dataclass(frozen=True)
class DomainAccess:
    """An administrator of the domain named by the path parameter ``param`` (or of the
    domain of the address in it)."""

    param: str

    def domain(self, values: dict[str, str]) -> str:
        """The domain the request concerns."""
        return values[self.param].rpartition("@")[2].lower()


def domain_of(param: str) -> DomainAccess:
    """Access for administrators of the domain in the path parameter ``param``."""
    return DomainAccess(param)


@dataclasses.dataclass(frozen=True)
class RawResponse:
    """A response that is not JSON: ``body`` sent as is with ``content_type``."""

    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    status: int = 200


#: Returned by a handler that took over ``ctx.request`` (a stream it finishes itself).
STREAMING = object()


@dataclasses.dataclass
class RequestContext:
    """What a handler gets besides its path parameters."""

    api: AdminApi
    request: Any  # twisted.web.server.Request
    actor: Actor | None = None
    body: Any = None
    query: Any = None

    @property
    def directory(self) -> Any:
        """The blocking directory (a SQLDirectory), for service functions run by :meth:`run`."""
        return self.api.directory.sync

    @property
    def settings(self) -> Any:
        """The configuration in force."""
        return self.api.service.settings

    @property
    def client_ip(self) -> str:
        """The client's IP address."""
        return self.request.getClientAddress().host

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred:
        """Run blocking ``function(*args, **kwargs)`` in the directory's thread pool."""
        return self.api.directory.run(function, *args, **kwargs)

    def authenticate(self) -> defer.Deferred:
        """The :class:`Actor` of the request's bearer token, or None (for public routes that
        accept a token as one way in)."""
        return defer.ensureDeferred(self.api.auth.actor(self.request, required=False))


Handler = Callable[..., Awaitable[Any]]


@dataclasses.dataclass(frozen=True)
class Route:
    """One method and path, its handler and what the OpenAPI document says of it."""

    method: str
    path: str  # OpenAPI style: /api/v1/domains/{name}
    handler: Handler
    summary: str
    access: Access | DomainAccess
    tag: str
    body: Any = None
    query: Any = None
    response: Any = None
    status: int = 200
    #: Media type of a RawResponse or a stream (None: JSON).
    produces: str | None = None

    def authorize(self, actor: Actor, params: dict[str, str]) -> None:
        """Refuse (Forbidden) unless ``actor`` may call this route with ``params``."""
        if self.access is Access.SYSTEM:
            actor.require_system("this")
        elif isinstance(self.access, DomainAccess):
            actor.require_domain(self.access.domain(params))


class Router:
    """A group of routes (one OpenAPI tag), collected by decorators."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        access: Access | DomainAccess,
        body: Any = None,
        query: Any = None,
        response: Any = None,
        status: int | None = None,
        produces: str | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated ``async def handler(ctx, **path_params)``."""

        def register(handler: Handler) -> Handler:
            code = status if status is not None else (204 if response is None else 200)
            self.routes.append(
                Route(method.upper(), path, handler, summary, access, self.tag, body, query,
                      response, code, produces)
            )  # fmt: skip
            return handler

        return register

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        """A GET route."""
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        """A POST route."""
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        """A PUT route."""
        return self.route("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        """A PATCH route."""
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        """A DELETE route."""
        return self.route("DELETE", path, **kw)
