"""HTML forms: the fields a page shows, the values a browser sends, and errors next to fields.

A form is a list of :class:`Field`; :func:`to_model` turns the posted values into the API's
request model (the same pydantic model the REST API parses JSON into), and
:func:`field_errors` places the errors of that model or of the service functions next to the
field they are about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from mailmax.core.api.errors import as_api_error


@dataclass(frozen=True)
class Field:
    """One form field: its ``name`` (the API's), ``label``, ``kind`` (text, password, number,
    select, checkbox, lines: one item a line), ``choices`` of a select, and ``help``."""

    name: str
    label: str
    kind: str = "text"
    choices: tuple[str, ...] = ()
    help: str = ""
    required: bool = False


@dataclass
class FormError(Exception):
    """A form that cannot be taken: a message per field, and one for the form as a whole."""

    fields: dict[str, str] = field(default_factory=dict)
    message: str = ""

    def __str__(self) -> str:
        return self.message or "; ".join(f"{k}: {v}" for k, v in self.fields.items())


def posted(fields: list[Field], form: dict[str, str]) -> dict[str, Any]:
    """The values of ``fields`` in ``form``: empty text left out, checkboxes True or False,
    lines as a list."""
    values: dict[str, Any] = {}
    for f in fields:
        if f.kind == "checkbox":
            values[f.name] = f.name in form
            continue
        text = form.get(f.name, "").strip() if f.kind != "password" else form.get(f.name, "")
        if f.kind == "lines":
            items = [line.strip() for line in text.replace(",", "\n").splitlines()]
            if items := [i for i in items if i]:
                values[f.name] = items
        elif text:
            values[f.name] = text
    return values


def to_model(model: type[BaseModel], fields: list[Field], form: dict[str, str]) -> Any:
    """The API request model of ``model`` from the posted ``form`` (FormError when invalid)."""
    return validate(model, posted(fields, form))


def validate(model: type[BaseModel], values: dict[str, Any]) -> Any:
    """``values`` as the API request ``model`` (FormError when invalid)."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise field_errors(exc, values) from None


def field_errors(exc: BaseException, values: dict[str, Any], primary: str = "") -> FormError:
    """A FormError for ``exc`` (a validation error, a service refusal), its messages placed
    next to the field they name (else next to ``primary``, the name of what a form creates);
    the same words the CLI and the API give."""
    if isinstance(exc, FormError):
        return exc
    if isinstance(exc, ValidationError):
        found: dict[str, str] = {}
        rest = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if (error["loc"] and str(error["loc"][0]) in values) or error["type"] == "missing":
                found.setdefault(str(error["loc"][0]), message)
            else:
                rest.append(message)
        return FormError(found, "; ".join(rest))
    error = as_api_error(exc)
    if error.status >= 500 or error.status == 403:
        raise exc
    name = error.extra.get("field")
    if name is None:  # a message quoting a value given names the field it came from
        name = next((k for k, v in values.items() if isinstance(v, str) and repr(v) in
                     error.message), None) or primary or None  # fmt: skip
    if name is not None:
        return FormError({name: error.message})
    return FormError(message=error.message)
