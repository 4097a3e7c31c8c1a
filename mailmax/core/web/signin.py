"""Sign-in and sign-out, through the admin API's password log-in and session tokens."""

from __future__ import annotations

import secrets

from mailmax.core.api import login as login_api
from mailmax.core.api.errors import ApiError
from mailmax.core.web import session
from mailmax.core.web.app import Page, Pages, Redirect

pages = Pages()


def _next(page: Page) -> str:
    """Where to go after signing in: a page of the web admin, never another site."""
    target = page.form.get("next", "")
    if target.startswith("/admin/") and not target.startswith("//"):
        return target
    return "/admin/"


def _form(page: Page, status: int = 200, error: str = "", username: str = "") -> bytes:
    token = secrets.token_urlsafe(24)
    session.set_cookie(page.request, session.SIGNIN_COOKIE, token, max_age=3600)
    return page.render("signin.html", status=status, csrf=token, error=error,
                       username=username, next=_next(page))  # fmt: skip


@pages.page("/admin/login", methods=("GET", "POST"), public=True)
async def sign_in(page: Page) -> bytes:
    """The sign-in form; a good password starts a session (a cookie) and goes on."""
    if page.request.method != b"POST":
        return _form(page)
    expected = session.read_cookie(page.request, session.SIGNIN_COOKIE)
    if not session.same(expected, page.form.get(session.CSRF_FIELD, "")):
        return _form(page, 403, "the form is out of date; please sign in again")
    username = page.form.get("username", "").strip()
    try:
        body = login_api.LoginRequest(username=username, password=page.form.get("password", ""))
        ctx = page.context(body=body)
        answer = await login_api.login(ctx)
    except ApiError as exc:
        return _form(page, exc.status, exc.message, username)
    except ValueError:
        return _form(page, 422, "give your address (user@domain) and your password", username)
    session.clear_cookie(page.request, session.SIGNIN_COOKIE)
    session.set_cookie(page.request, session.SESSION_COOKIE, answer.token)
    raise Redirect(_next(page))


@pages.page("/admin/logout", methods=("POST",))
async def sign_out(page: Page) -> bytes:
    """End the session (the API's log-out), its open streams, and forget the cookie."""
    await page.call(login_api.logout)
    page.end_streams()
    session.clear_cookie(page.request, session.SESSION_COOKIE)
    raise Redirect("/admin/login")
