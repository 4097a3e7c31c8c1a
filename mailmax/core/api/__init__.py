"""The HTTPS admin API, served by the ``twistd mailmax`` process on ``[admin]`` address:port.

Routes live under ``/api/v1/``; ``/api/openapi.json`` describes them all (OpenAPI 3.1, built
from the routes' pydantic models). Requests and answers are JSON. Every route but the log-in
needs ``Authorization: Bearer <token>``, an API token (``mailmax admin token create``) or a
session token from ``POST /api/v1/login``.

Adding routes
-------------
Write a module with a :class:`~mailmax.core.api.routing.Router` called ``router`` and list the
module in :data:`mailmax.core.api.app.ROUTE_MODULES`::

    from pydantic import BaseModel

    from mailmax.core.api.routing import Access, RequestContext, Router, domain_of

    router = Router("widgets")          # the OpenAPI tag

    class Widget(BaseModel):
        \"\"\"A widget (the docstring becomes the schema's description).\"\"\"
        name: str

    @router.get("/api/v1/widgets", response=list[Widget], access=Access.SYSTEM,
                summary="List widgets")
    async def list_widgets(ctx: RequestContext) -> list[Widget]:
        return await ctx.run(widget_service.list_widgets, ctx.directory, ctx.actor)

    @router.get("/api/v1/domains/{domain}/widgets", response=list[Widget],
                access=domain_of("domain"), summary="A domain's widgets")
    async def domain_widgets(ctx: RequestContext, domain: str) -> list[Widget]:
        ...

- ``access`` is who may call the route: ``Access.SYSTEM`` (system administrators only),
  ``Access.ANY`` (any administrator; the handler and the services it calls limit a domain
  administrator to their domains through ``ctx.actor``), ``domain_of("param")`` (an
  administrator of the domain named by that path parameter, or of the domain of the address
  in it) or ``Access.PUBLIC`` (no token needed; the handler checks what it needs, e.g. with
  :meth:`RequestContext.authenticate` or :attr:`RequestContext.client_ip`). A refusal is
  ``403`` with the same text whether the object exists or not.
- ``body=Model`` parses the JSON body into ``ctx.body`` (``422`` naming each bad field);
  ``query=Model`` parses the query string into ``ctx.query``; ``response`` is the type the
  handler returns (a model, ``list[Model]``, or None for ``204``), serialised with pydantic.
- Blocking work (every directory call) goes through ``await ctx.run(function, *args)``, which
  runs it in the directory's thread pool, never on the reactor thread.
- Service functions raise the directory's errors; they become ``404`` (NotFound), ``409``
  (AlreadyExists), ``422`` (FieldError, DirectoryError), ``403`` (Forbidden), ``503``
  (DirectoryUnavailable), each with ``{"error": {"status": N, "message": "..."}}``; a handler
  may raise :class:`~mailmax.core.api.errors.ApiError` for any other status.
- A handler may return :class:`~mailmax.core.api.routing.RawResponse` for a body that is not
  JSON (``/metrics``), or take over ``ctx.request`` for a stream (server-sent events: write to
  it, finish it when the client goes, and return :data:`~mailmax.core.api.routing.STREAMING`).
- A test (``tests/test_api_openapi.py``) checks that every route is in the OpenAPI document.
"""
