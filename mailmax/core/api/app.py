"""The admin API application: the routes of :data:`ROUTE_MODULES` on one Klein app, each
request authenticated, checked against the route's access, parsed and answered in JSON."""

from __future__ import annotations

import importlib
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from klein import Klein
from pydantic import BaseModel, TypeAdapter, ValidationError
from twisted.internet import defer
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound as NoRoute

from mailmax.core.api.auth import Authenticator
from mailmax.core.api.errors import ApiError, as_api_error, describe_validation
from mailmax.core.api.routing import (
    STREAMING,
    Access,
    RawResponse,
    RequestContext,
    Route,
)

if TYPE_CHECKING:
    from mailmax.core.service import MailMaxService

#: Modules holding a ``router`` (a :class:`~mailmax.core.api.routing.Router`) to serve.
ROUTE_MODULES = (
    "mailmax.core.api.openapi",
    "mailmax.core.api.login",
    "mailmax.core.api.domains",
    "mailmax.core.api.users",
    "mailmax.core.api.admins",
    "mailmax.core.api.plugins",
    "mailmax.core.api.queue",
    "mailmax.core.api.bans",
    "mailmax.core.api.access",
    "mailmax.core.api.rules",
    "mailmax.core.api.server",
    "mailmax.core.api.observe",
    "mailmax.core.api.housekeeping",
    "mailmax.core.api.ldap",
    "mailmax.core.api.config",
    "mailmax.core.api.autoreply",
)


def collect_routes(modules: tuple[str, ...] = ROUTE_MODULES) -> list[Route]:
    """Every route of ``modules``."""
    return [route for name in modules for route in importlib.import_module(name).router.routes]


def _klein_path(path: str) -> str:
    return path.replace("{", "<").replace("}", ">")


def json_bytes(value: Any) -> bytes:
    """``value`` as JSON (pydantic models and dataclasses included)."""
    if isinstance(value, BaseModel):
        return value.model_dump_json().encode()
    return TypeAdapter(Any).dump_json(value)


class AdminApi:
    """The API of one running server: its routes, authentication and sessions."""

    def __init__(self, service: MailMaxService, modules: tuple[str, ...] = ROUTE_MODULES) -> None:
        self.service = service
        self.reactor = service.reactor
        self.routes = collect_routes(modules)
        self.auth = Authenticator(self)
        self.app = Klein()
        self._adapters: dict[int, TypeAdapter[Any]] = {}
        for route in self.routes:
            self._mount(route)
        self.app.handle_errors(NoRoute)(self._no_route)
        self.app.handle_errors(MethodNotAllowed)(self._no_method)

    @property
    def directory(self) -> Any:
        """The server's AsyncDirectory (its ``run`` uses the directory's thread pool)."""
        return self.service.async_directory

    def resource(self) -> Any:
        """The twisted.web resource serving the API."""
        return self.app.resource()

    def _mount(self, route: Route) -> None:
        def serve(request: Any, **params: str) -> defer.Deferred:
            d = defer.ensureDeferred(self._serve(route, request, params))
            return d.addCallback(self._published, request)

        endpoint = f"{route.method} {route.path}"
        self.app.route(_klein_path(route.path), methods=[route.method], endpoint=endpoint)(serve)
        if route.response is not None:
            self._adapters[id(route)] = TypeAdapter(route.response)

    # ------------------------------------------------------------------ one request
    async def _serve(self, route: Route, request: Any, params: dict[str, str]) -> Any:
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        try:
            ctx = RequestContext(self, request)
            if route.access is not Access.PUBLIC:
                ctx.actor = actor = await self.auth.actor(request)
                route.authorize(actor, params)
            if route.query is not None:
                ctx.query = _parse_query(request, route.query)
            if route.body is not None:
                ctx.body = _parse_body(request, route.body)
            result = await route.handler(ctx, **params)
        except Exception as exc:
            return self._error(request, as_api_error(exc))
        if result is STREAMING:
            finished = request.notifyFinish()
            finished.addErrback(lambda _: None)
            return await finished
        if isinstance(result, RawResponse):
            request.setResponseCode(result.status)
            request.setHeader(b"content-type", result.content_type.encode())
            return result.body
        request.setResponseCode(route.status)
        if route.status == 204 or route.response is None:
            return b""
        request.setHeader(b"content-type", b"application/json")
        adapter = self._adapters[id(route)]
        return adapter.dump_json(adapter.validate_python(result, from_attributes=True))

    def _published(self, body: Any, request: Any) -> Any:
        """Publish the request as an event (service ``admin``, category ``commands``)."""
        bus = self.service.observe.bus
        if bus.wants("admin", "commands"):
            path = urlsplit(request.uri.decode("utf-8", "replace")).path
            method = request.method.decode("ascii", "replace")
            ip = request.getClientAddress().host
            bus.emit("admin", "commands", f"{method} {path} {request.code}", ip=ip)
        return body

    @staticmethod
    def _error(request: Any, error: ApiError) -> bytes:
        request.setResponseCode(error.status)
        request.setHeader(b"content-type", b"application/json")
        if error.status == 401:
            request.setHeader(b"www-authenticate", b'Bearer realm="mailmax"')
        return json.dumps(error.body()).encode()

    def _no_route(self, request: Any, failure: Any) -> bytes:
        path = request.path.decode("utf-8", "replace")
        return self._error(request, ApiError(404, f"no such API path: {path}"))

    def _no_method(self, request: Any, failure: Any) -> bytes:
        valid = failure.value.valid_methods or []
        request.setHeader(b"allow", ", ".join(valid).encode())
        method = request.method.decode("ascii", "replace")
        return self._error(
            request, ApiError(405, f"{method} is not allowed here; use {', '.join(valid)}")
        )


def _parse_query(request: Any, model: type[BaseModel]) -> BaseModel:
    pairs = parse_qsl(urlsplit(request.uri.decode("utf-8", "replace")).query)
    values: dict[str, Any] = {}
    for key, value in pairs:
        values[key] = value
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ApiError(422, f"bad query: {describe_validation(exc)}") from None


def _parse_body(request: Any, model: Any) -> Any:
    kind = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(415, "send the request body as JSON (Content-Type: application/json)")
    raw = request.content.read()
    try:
        data = json.loads(raw or b"null")
    except ValueError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    try:
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        raise ApiError(422, describe_validation(exc)) from None
