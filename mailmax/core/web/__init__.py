"""The web admin: HTML pages for administrators, served under ``/admin/`` by the admin API's
HTTPS listener in the ``twistd mailmax`` process.

Pages are rendered on the server (Jinja2) and need no JavaScript. Each page calls the same
API handlers the REST API serves, with the same access rules, validation and service
functions (one code path); the web admin adds only what a browser needs: a session cookie
holding an API session token, a CSRF token on every form, and HTML.

Adding pages
------------
Write a module with a :class:`~mailmax.core.web.app.Pages` called ``pages`` and list it in
:data:`mailmax.core.web.app.PAGE_MODULES`::

    pages = Pages()

    @pages.page("/admin/widgets")
    async def widgets(page: Page) -> bytes:
        found = await page.call(widgets_api.list_widgets, query=ListQuery())
        return page.render("widgets.html", widgets=found)
"""
