"""The OpenAPI 3.1 document of the admin API, built from the routes and their pydantic models
(served at ``/api/openapi.json``)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, TypeAdapter

from mailmax.core.api.routing import Access, DomainAccess, RequestContext, Route, Router

router = Router("meta")

_REF = "#/components/schemas/{model}"
_ACCESS_TEXT = {
    Access.PUBLIC: "No token needed.",
    Access.ANY: "Any administrator; a domain administrator sees and changes only their domains.",
    Access.SYSTEM: "System administrators only.",
}


class ErrorBody(BaseModel):
    """What went wrong."""

    status: int
    message: str
    field: str | None = None


class ErrorAnswer(BaseModel):
    """Every error answer."""

    error: ErrorBody


def _schema(tp: Any, components: dict[str, Any]) -> dict[str, Any]:
    schema = TypeAdapter(tp).json_schema(ref_template=_REF)
    components.update(schema.pop("$defs", {}))
    if isinstance(tp, type) and issubclass(tp, BaseModel) and "title" in schema:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", tp.__name__).strip("_")
        components[name] = schema
        return {"$ref": _REF.format(model=name)}
    return schema


def _access_text(access: Access | DomainAccess) -> str:
    if isinstance(access, DomainAccess):
        return f"System administrators and administrators of the domain in `{access.param}`."
    return _ACCESS_TEXT[access]


def _operation(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    doc = (route.handler.__doc__ or "").strip()
    operation: dict[str, Any] = {
        "summary": route.summary,
        "description": f"{doc}\n\n{_access_text(route.access)}".strip(),
        "operationId": route.handler.__name__,
        "tags": [route.tag],
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", route.path)
        ],
        "responses": {},
    }
    if route.query is not None:
        schema = route.query.model_json_schema(ref_template=_REF)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            entry = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if prop.get("description"):
                entry["description"] = prop["description"]
            operation["parameters"].append(entry)
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(route.body, components)}},
        }
    answer: dict[str, Any] = {"description": "Success."}
    if route.produces:
        answer["content"] = {route.produces: {"schema": {"type": "string"}}}
    elif route.response is not None:
        answer["content"] = {"application/json": {"schema": _schema(route.response, components)}}
    operation["responses"][str(route.status)] = answer
    error = {
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorAnswer")}}}
    }
    if route.access is not Access.PUBLIC:
        operation["security"] = [{"bearer": []}]
        operation["responses"]["401"] = {"description": "No valid token.", **error}
        operation["responses"]["403"] = {"description": "Not allowed.", **error}
    operation["responses"]["default"] = {"description": "An error.", **error}
    return operation


def build_document(routes: list[Route], version: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``routes``."""
    components: dict[str, Any] = {}
    _schema(ErrorAnswer, components)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MailMax admin API",
            "version": version or "1",
            "description": "Administer a MailMax mail server: domains, users, aliases, "
            "plugins, the queue and administrators. Send `Authorization: Bearer <token>` "
            "with an API token or a session token from `POST /api/v1/login`.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@router.get(
    "/api/openapi.json",
    summary="This API's OpenAPI document",
    access=Access.PUBLIC,
    response=dict[str, Any],
)
async def openapi_document(ctx: RequestContext) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("mailmax")
    except PackageNotFoundError:
        found = ""
    return build_document(ctx.api.routes, found)
