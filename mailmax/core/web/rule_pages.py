"""Rules for incoming mail: the system's list, each domain's and each user's (a domain
administrator: their domains' and their users' lists)."""

from __future__ import annotations

from typing import Any

from mailmax.core.api import rules as rules_api
from mailmax.core.web.app import Page, Pages
from mailmax.core.web.forms import Field, FormError, validate

pages = Pages()

SCOPE_FIELDS = [
    Field("domain", "Domain's list", help="The rules for all mail to this domain."),
    Field("user", "User's list", help="The rules of this user's own mail."),
]
RULE_FIELDS = [
    Field("name", "Name", required=True),
    Field("conditions", "Conditions, one a line", kind="lines", required=True,
          help="All must hold, e.g. header Subject contains invoice; size > 5m; any."),
    Field("actions", "Actions, one a line", kind="lines", required=True,
          help="e.g. folder Invoices; forward boss@example.com; discard; terminate."),
]  # fmt: skip
ADD_FIELDS = [
    *RULE_FIELDS,
    Field("position", "Place in the list", kind="number", help="1: runs first; empty: last."),
    Field("disabled", "Add it switched off", kind="checkbox"),
]
EDIT_FIELDS = [Field("new_name", "Name", required=True), *RULE_FIELDS[1:]]


def _lines(text: str) -> list[str]:
    """The non-empty lines of a text area (commas stay: conditions and actions use them)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _form_values(page: Page, fields: list[Field]) -> dict[str, Any]:
    """What the form sent, as the form shows it again."""
    values: dict[str, Any] = {}
    for f in fields:
        if f.kind == "checkbox":
            values[f.name] = f.name in page.form
        elif text := page.form.get(f.name, "").strip():
            values[f.name] = text
    return values


def _request(values: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The API request of a rule form: text areas as lists, empty fields left out."""
    made = {k: v for k, v in values.items() if v not in ("", None)}
    for name in ("conditions", "actions"):
        if name in made:
            made[name] = _lines(made[name])
    return {**made, **extra}


def scope_of(page: Page) -> dict[str, Any]:
    """The list a form or link names: system, a domain's or a user's."""
    return {
        "system": page.form.get("system") in ("on", "true", "1"),
        "domain": page.form.get("domain", "").strip() or None,
        "user": page.form.get("user", "").strip() or None,
    }


def _scope_query(scope: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode({k: ("true" if v is True else v) for k, v in scope.items() if v})


@pages.page("/admin/rules", methods=("GET", "POST"))
async def rules(page: Page) -> bytes:
    """The rules of one list or of every list, in the order they run; a form to add one."""
    errors, values = FormError(), {}
    fields = ADD_FIELDS + SCOPE_FIELDS
    if page.actor is not None and page.actor.system:
        fields = [*fields, Field("system", "The system's list", kind="checkbox")]
    if page.request.method == b"POST":
        values = _form_values(page, fields)
        try:
            body = validate(rules_api.NewRule, _request(
                {k: v for k, v in values.items() if k not in ("disabled", "system")},
                {"enabled": not values.get("disabled"), "system": bool(values.get("system"))},
            ))  # fmt: skip
            made = await page.submit(rules_api.add_rule, body, values=values, primary="name")
            raise page.done(f"rule {made['name']!r} added to the {made['where']} list "
                            f"(number {made['position']})", "/admin/rules")  # fmt: skip
        except FormError as refused:
            errors = refused
    shown = {k: page.form.get("filter_" + k, "").strip() or None for k in ("domain", "user")}
    query = rules_api.RuleQuery(**shown)
    found = await page.call(rules_api.list_rules, query=query)
    return page.render("rules.html", status=422 if values else 200, rules=found,
                       fields=fields, values=values, errors=errors, shown=shown,
                       scope_query=_scope_query)  # fmt: skip


@pages.page("/admin/rules/edit", methods=("GET", "POST"))
async def edit(page: Page) -> bytes:
    """Change a rule's name, conditions and actions."""
    scope = scope_of(page)
    name = page.form.get("name", "")
    errors = FormError()
    if page.request.method == b"POST":
        values = _form_values(page, EDIT_FIELDS)
        try:
            body = validate(rules_api.RuleChange, _request(values, {**scope, "name": name}))
            made = await page.submit(rules_api.change_rule, body, values=values,
                                     primary="new_name")  # fmt: skip
            raise page.done(f"rule {made['name']!r} of the {made['where']} list changed",
                            "/admin/rules")  # fmt: skip
        except FormError as refused:
            errors = refused
    else:
        query = rules_api.RuleQuery(**scope, name=name)
        (rule,) = await page.call(rules_api.list_rules, query=query)
        values = {"new_name": rule["name"], "conditions": "\n".join(rule["conditions"]),
                  "actions": "\n".join(rule["actions"])}  # fmt: skip
    return page.render("rule_edit.html", status=422 if errors.fields or errors.message else 200,
                       name=name, scope=scope, fields=EDIT_FIELDS, values=values,
                       errors=errors)  # fmt: skip


async def _change(page: Page, **change: Any) -> Any:
    body = rules_api.RuleChange(**scope_of(page), name=page.form.get("name", ""), **change)
    return await page.call(rules_api.change_rule, body)


@pages.page("/admin/rules/switch", methods=("POST",))
async def switch(page: Page) -> bytes:
    """Switch one rule on or off."""
    made = await _change(page, enabled=page.form.get("enabled") == "true")
    raise page.done(f"rule {made['name']!r} {made['state']}", "/admin/rules")


@pages.page("/admin/rules/move", methods=("POST",))
async def move(page: Page) -> bytes:
    """Move one rule in its list."""
    made = await _change(page, position=page.form.get("position", ""))
    raise page.done(f"rule {made['name']!r} is number {made['position']} of the "
                    f"{made['where']} list", "/admin/rules")  # fmt: skip


@pages.page("/admin/rules/delete", methods=("POST",))
async def delete(page: Page) -> bytes:
    """Delete one rule."""
    query = rules_api.RuleRef(**scope_of(page), name=page.form.get("name", ""))
    gone = await page.call(rules_api.delete_rule, query=query)
    raise page.done(f"rule {gone['name']!r} of the {gone['where']} list deleted", "/admin/rules")


TEST_FIELDS = [
    Field("user", "Recipient", required=True),
    Field("message", "Message", kind="lines", required=True,
          help="The whole message: header lines, an empty line, the body."),
    Field("at", "Arriving at", help="A date and time like 2027-01-31T18:00; empty: now."),
]  # fmt: skip


@pages.page("/admin/rules/test", methods=("GET", "POST"))
async def try_rules(page: Page) -> bytes:
    """Run a message through the rules of a recipient; nothing is stored or sent."""
    errors, values, result = FormError(), {}, None
    if page.request.method == b"POST":
        values = _form_values(page, TEST_FIELDS)
        sent = dict(values)
        if "message" in sent:  # the text area as typed, its lines ending in CRLF as on the wire
            sent["message"] = "\r\n".join(page.form["message"].splitlines()) + "\r\n"
        try:
            body = validate(rules_api.RuleTest, sent)
            result = await page.submit(rules_api.test_rules, body, values=values, primary="user")
        except FormError as refused:
            errors = refused
    status = 422 if errors.fields or errors.message else 200
    return page.render("rule_test.html", status=status, fields=TEST_FIELDS, values=values,
                       errors=errors, result=result)  # fmt: skip
