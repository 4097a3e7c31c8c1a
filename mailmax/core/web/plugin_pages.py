"""Plugins per scope: what is on for the system, a domain or a user; switch on or off; a
settings form made from each plugin's settings model; reload with its result."""

from __future__ import annotations

import json
import typing
from typing import Any
from urllib.parse import urlencode

from mailmax.core.api import plugins as plugins_api
from mailmax.core.api import server as server_api
from mailmax.core.api.errors import ApiError
from mailmax.core.services.plugins import PluginAdmin
from mailmax.core.web.app import Page, Pages
from mailmax.core.web.forms import FormError, field_errors

pages = Pages()


def _scope(page: Page) -> plugins_api.ScopeQuery:
    """The scope the page asks for; a domain administrator's first domain by default."""
    domain = page.form.get("domain", "").strip() or None
    user = page.form.get("user", "").strip() or None
    assert page.actor is not None
    if not (domain or user or page.actor.system):
        domain = sorted(page.actor.domains)[0]
    return plugins_api.ScopeQuery(domain=domain, user=user)


def _scope_args(scope: plugins_api.ScopeQuery) -> str:
    given = {k: v for k, v in scope.model_dump().items() if v}
    return "?" + urlencode(given) if given else ""


def as_text(value: Any) -> str:
    """A setting's value as a form shows it (lists with commas, the rest as JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value)


def choices_of(annotation: Any) -> tuple[str, ...]:
    """The values a ``Literal`` setting allows (empty for any other type)."""
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(as_text(value) for value in typing.get_args(annotation))
    return ()


def settings_form(page: Page, name: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    """One field per setting of the plugin's settings model: name, description, value, where
    it is set, and the choices of a setting that allows only some values."""
    plugin = PluginAdmin(page.api.service.settings, page.api.directory.sync, page.actor).load(name)
    described = plugin.schema.model_fields if plugin.schema is not None else {}
    fields = []
    for key, shown in report["settings"].items():
        info = described.get(key)
        choices = choices_of(info.annotation) if info is not None else ()
        if isinstance(shown["value"], bool):
            choices = ("true", "false")
        fields.append({
            "name": key,
            "help": (info.description or "") if info is not None else "",
            "value": as_text(shown["value"]),
            "from": shown["from"],
            "choices": choices,
        })  # fmt: skip
    return fields


@pages.page("/admin/plugins")
async def plugin_list(page: Page) -> bytes:
    """Every plugin with its status, origin, scopes and hooks."""
    found = await page.call(plugins_api.list_plugins)
    domain, user = page.form.get("domain", "").strip(), page.form.get("user", "").strip()
    args = _scope_args(plugins_api.ScopeQuery(domain=domain or None, user=user or None))
    return page.render("plugins.html", plugins=found["plugins"], hooks=found["hooks"],
                       scope_domain=domain, scope_user=user, scope_args=args)  # fmt: skip


async def _plugin_page(page: Page, name: str, status: int = 200, errors: Any = None) -> bytes:
    scope = _scope(page)
    report = await page.call(plugins_api.show_plugin, query=scope, name=name)
    fields = await page.api.directory.run(settings_form, page, name, report)
    return page.render("plugin.html", status=status, name=name, report=report, fields=fields,
                       scope=scope, scope_args=_scope_args(scope),
                       errors=errors or FormError())  # fmt: skip


@pages.page("/admin/plugins/<name>")
async def plugin_show(page: Page, name: str) -> bytes:
    """A plugin at a scope: its switch and settings, each with where it comes from."""
    return await _plugin_page(page, name)


@pages.page("/admin/plugins/<name>/switch", methods=("POST",))
async def plugin_switch(page: Page, name: str) -> bytes:
    """Switch a plugin on or off at the scope."""
    scope = _scope(page)
    body = plugins_api.Switch(**scope.model_dump(), enabled=page.form.get("enabled") == "on")
    try:
        change = await page.call(plugins_api.switch_plugin, body, name=name)
    except ApiError as exc:
        return await _plugin_page(page, name, exc.status, FormError(message=exc.message))
    except Exception as exc:
        return await _plugin_page(page, name, 422, field_errors(exc, {}))
    raise page.done(change.message, f"/admin/plugins/{name}{_scope_args(scope)}")


@pages.page("/admin/plugins/<name>/settings", methods=("POST",))
async def plugin_settings(page: Page, name: str) -> bytes:
    """Change the settings whose text was changed, checked by the plugin's model."""
    scope = _scope(page)
    report = await page.call(plugins_api.show_plugin, query=scope, name=name)
    texts = {
        key: page.form[f"set.{key}"]
        for key, shown in report["settings"].items()
        if f"set.{key}" in page.form and page.form[f"set.{key}"] != as_text(shown["value"])
    }
    if not texts:
        raise page.done("nothing changed", f"/admin/plugins/{name}{_scope_args(scope)}")
    admin = PluginAdmin(page.api.service.settings, page.api.directory.sync, page.actor)
    try:
        values = await page.api.directory.run(admin.parse_values, name, texts)
        body = plugins_api.SettingsChange(**scope.model_dump(), settings=values)
        change = await page.call(plugins_api.change_settings, body, name=name)
    except Exception as exc:
        errors = field_errors(exc, {})
        key = next((k for k in texts if repr(k) in errors.message or f" {k}" in errors.message),
                   None)  # fmt: skip
        if key is not None:
            errors = FormError({f"set.{key}": errors.message})
        return await _plugin_page(page, name, 422, errors)
    raise page.done(change.message, f"/admin/plugins/{name}{_scope_args(scope)}")


@pages.page("/admin/reload", methods=("POST",))
async def reload(page: Page) -> bytes:
    """Reload the configuration and plugins; the result is shown on the plugin list."""
    try:
        answer = await page.call(server_api.reload)
    except ApiError as exc:
        if exc.status == 403:
            raise
        raise page.done(exc.message, "/admin/plugins") from None
    restart = f"; waiting for a restart: {', '.join(answer.restart)}" if answer.restart else ""
    message = f"reloaded: plugins {', '.join(answer.plugins) or 'none'}{restart}"
    raise page.done(message, "/admin/plugins")
