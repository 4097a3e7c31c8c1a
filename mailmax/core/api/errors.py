"""How the admin API reports errors: a status and ``{"error": {"status", "message"}}``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailmax.core.directory.errors import (
    AlreadyExists,
    DirectoryError,
    DirectoryUnavailable,
    FieldError,
    NotFound,
)
from mailmax.core.services.actor import Forbidden

log = Logger(namespace="mailmax.api")


class ApiError(Exception):
    """An error answer: HTTP ``status`` and a message for the client."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        return {"error": {"status": self.status, "message": self.message, **self.extra}}


def describe_validation(exc: ValidationError) -> str:
    """The problems of a request body or query, one per field, in one line."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def as_api_error(exc: BaseException) -> ApiError:
    """The answer for an exception raised while serving a request."""
    if isinstance(exc, ApiError):
        return exc
    from mailmax.core.admin import AdminError

    if isinstance(exc, AdminError):  # the running server cannot do it now (plugin not loaded)
        return ApiError(409, str(exc))
    if isinstance(exc, Forbidden):
        return ApiError(403, str(exc))
    if isinstance(exc, NotFound):
        return ApiError(404, str(exc))
    if isinstance(exc, AlreadyExists):
        return ApiError(409, str(exc))
    if isinstance(exc, FieldError):
        return ApiError(422, exc.named(exc.field), field=exc.field)
    if isinstance(exc, DirectoryError):
        return ApiError(422, str(exc))
    if isinstance(exc, ValidationError):
        return ApiError(422, describe_validation(exc))
    if isinstance(exc, DirectoryUnavailable):
        return ApiError(503, f"{exc} (a temporary failure; try again)")
    log.failure("admin API request failed", Failure(exc, type(exc), exc.__traceback__))
    return ApiError(500, f"internal error: {type(exc).__name__}; see the server log")
