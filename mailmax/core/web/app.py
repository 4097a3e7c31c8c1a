"""The web admin application: pages mounted on the admin API's Klein app, each request signed
in from its cookie, checked for CSRF, and answered in HTML."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from twisted.internet import defer

from mailmax.core.api.errors import ApiError, as_api_error
from mailmax.core.api.routing import STREAMING, RequestContext
from mailmax.core.web import session
from mailmax.core.web.forms import FormError

if TYPE_CHECKING:
    from mailmax.core.api.app import AdminApi
    from mailmax.core.services.actor import Actor

#: Modules holding ``pages`` (a :class:`Pages`) to serve.
PAGE_MODULES = (
    "mailmax.core.web.signin",
    "mailmax.core.web.directory_pages",
    "mailmax.core.web.alias_pages",
    "mailmax.core.web.plugin_pages",
    "mailmax.core.web.admin_pages",
    "mailmax.core.web.ban_pages",
    "mailmax.core.web.access_pages",
    "mailmax.core.web.rule_pages",
    "mailmax.core.web.server_pages",
    "mailmax.core.web.trace_pages",
    "mailmax.core.web.housekeeping_pages",
    "mailmax.core.web.ldap_pages",
)

#: Files under /admin/static/ and their media types.
STATIC = {
    "admin.css": "text/css; charset=utf-8",
    "trace.js": "text/javascript; charset=utf-8",
}

#: Headers every page is sent with: never cached, never framed, scripts and styles only from
#: this server.
HEADERS = {
    b"cache-control": b"no-store",
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"same-origin",
    b"content-security-policy": b"default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}

Handler = Callable[..., Awaitable[Any]]


def utc_time(seconds: float) -> str:
    """A Unix time as shown on pages: ``2026-12-07 19:45:02 UTC``."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Redirect(Exception):
    """Answer with a redirection to ``location`` (303: the browser then GETs it)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclasses.dataclass(frozen=True)
class PageRoute:
    """One page: path (Klein style), methods, handler, and whether it needs no sign-in."""

    path: str
    methods: tuple[str, ...]
    handler: Handler
    public: bool = False


class Pages:
    """A group of pages, collected by a decorator."""

    def __init__(self) -> None:
        self.routes: list[PageRoute] = []

    def page(
        self, path: str, methods: tuple[str, ...] = ("GET",), public: bool = False
    ) -> Callable[[Handler], Handler]:
        """Register the decorated ``async def handler(page, **path_params) -> bytes``."""

        def register(handler: Handler) -> Handler:
            self.routes.append(PageRoute(path, methods, handler, public))
            return handler

        return register


async def _no_page(page: Page, rest: str) -> bytes:
    """Any other path under /admin/: a page saying so."""
    raise ApiError(404, f"there is no page /admin/{rest}; use the menu")


class WebAdmin:
    """The web admin of one running server, served by its admin API."""

    def __init__(self, api: AdminApi, modules: tuple[str, ...] = PAGE_MODULES) -> None:
        self.api = api
        self.csrf = session.CsrfKeys()
        self.flashes: dict[str, str] = {}
        #: Event streams open per session, ended when the session signs out.
        self.streams: dict[str, set[Any]] = {}
        self.api_routes = {route.handler: route for route in api.routes}
        self.templates = Environment(
            loader=PackageLoader("mailmax.core.web", "templates"),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["q"] = lambda value: quote(str(value), safe="@")
        self.templates.filters["utc"] = utc_time
        for name in modules:
            for route in importlib.import_module(name).pages.routes:
                self._mount(route)
        api.app.route("/admin/static/<name>", methods=["GET"], endpoint="web static")(self._static)
        self._mount(PageRoute("/admin/<path:rest>", ("GET", "POST"), _no_page))

    def _mount(self, route: PageRoute) -> None:
        def serve(request: Any, **params: str) -> defer.Deferred:
            return defer.ensureDeferred(self._serve(route, request, params))

        endpoint = f"web {route.path}"
        self.api.app.route(route.path, methods=list(route.methods), endpoint=endpoint)(serve)

    def _static(self, request: Any, name: str) -> bytes:
        if name not in STATIC:
            request.setResponseCode(404)
            return b"not found"
        request.setHeader(b"content-type", STATIC[name].encode())
        request.setHeader(b"cache-control", b"max-age=3600")
        return resources.files("mailmax.core.web").joinpath("static", name).read_bytes()

    async def _serve(self, route: PageRoute, request: Any, params: dict[str, str]) -> bytes | None:
        for name, value in HEADERS.items():
            request.setHeader(name, value)
        page = Page(self, request)
        try:
            if not route.public:
                await page.sign_in()
                if request.method == b"POST":
                    page.check_csrf()
            body = await route.handler(page, **params)
        except Redirect as where:
            request.setResponseCode(303)
            request.setHeader(b"location", where.location.encode())
            return b""
        except Exception as exc:
            error = as_api_error(exc)
            return page.render("error.html", status=error.status, message=error.message)
        if body is STREAMING:  # the handler writes to the request until the client leaves
            finished = request.notifyFinish()
            finished.addErrback(lambda _: None)
            return await finished
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return body


class Page:
    """One request to a page: who asks, what they sent, and how to answer."""

    def __init__(self, web: WebAdmin, request: Any) -> None:
        self.web = web
        self.request = request
        self.actor: Actor | None = None
        self.token = ""
        self.form = {
            key.decode("utf-8", "replace"): values[-1].decode("utf-8", "replace")
            for key, values in (request.args or {}).items()
        }

    @property
    def api(self) -> AdminApi:
        """The admin API this page belongs to."""
        return self.web.api

    async def sign_in(self) -> None:
        """Take the administrator from the session cookie; to the sign-in page without one."""
        token = session.read_cookie(self.request, session.SESSION_COOKIE)
        if token:
            # The API's authentication reads the token from this header: one code path.
            self.request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}"])
            try:
                self.actor = await self.api.auth.actor(self.request)
                self.token = token
                return
            except ApiError:
                session.clear_cookie(self.request, session.SESSION_COOKIE)
        target = self.request.uri.decode("utf-8", "replace")
        raise Redirect("/admin/login?" + urlencode({"next": target}))

    def check_csrf(self) -> None:
        """Refuse a form without this session's CSRF token."""
        if not self.web.csrf.valid(self.token, self.form.get(session.CSRF_FIELD, "")):
            raise ApiError(403, "the form is out of date or was not sent by this site; "
                                "reload the page and try again")  # fmt: skip

    def _flash_key(self) -> str:
        return hashlib.sha256(self.token.encode()).hexdigest()

    def hold_stream(self) -> None:
        """Note this request's open stream, to end it if the session signs out first."""
        key, request = self._flash_key(), self.request
        held = self.web.streams.setdefault(key, set())
        held.add(request)

        def forget(_: object) -> None:
            held.discard(request)
            if not held and self.web.streams.get(key) is held:
                del self.web.streams[key]

        request.notifyFinish().addBoth(forget)

    def end_streams(self) -> None:
        """End the streams this session holds open (at sign-out)."""
        for request in list(self.web.streams.pop(self._flash_key(), ())):
            if not request.finished:
                request.unregisterProducer()  # the stream's writer, ended when it finishes
                request.finish()

    def done(self, message: str, location: str) -> Redirect:
        """A redirection to ``location``, which then shows ``message``."""
        if self.token:
            if len(self.web.flashes) > 1000:
                self.web.flashes.clear()
            self.web.flashes[self._flash_key()] = message
        return Redirect(location)

    def render(self, template: str, status: int = 200, **values: Any) -> bytes:
        """The HTML of ``template`` with ``values``, answered with ``status``."""
        self.request.setResponseCode(status)
        self.request.setHeader(b"content-type", b"text/html; charset=utf-8")
        flash = self.web.flashes.pop(self._flash_key(), "") if self.token else ""
        csrf = self.web.csrf.token_for(self.token) if self.token else values.pop("csrf", "")
        path = self.request.path.decode("utf-8", "replace")
        html = self.web.templates.get_template(template).render(
            actor=self.actor, csrf=csrf, flash=flash, path=path, status=status, **values
        )
        return html.encode("utf-8")

    def context(self, body: Any = None, query: Any = None) -> RequestContext:
        """A RequestContext for an API handler, for this page's administrator."""
        return RequestContext(self.api, self.request, actor=self.actor, body=body, query=query)

    async def call(
        self, handler: Handler, body: Any = None, query: Any = None, **params: str
    ) -> Any:
        """Call the API handler ``handler`` as the REST API would: its access rule first."""
        assert self.actor is not None
        self.web.api_routes[handler].authorize(self.actor, params)
        return await handler(self.context(body, query), **params)

    async def submit(self, handler: Handler, body: Any = None, query: Any = None,
                     values: dict[str, Any] | None = None, primary: str = "",
                     **params: str) -> Any:  # fmt: skip
        """Like :meth:`call`, but a refusal the admin can fix becomes a FormError."""
        from mailmax.core.web.forms import field_errors

        try:
            return await self.call(handler, body, query, **params)
        except FormError:
            raise
        except Exception as exc:
            raise field_errors(exc, values or {}, primary) from None
