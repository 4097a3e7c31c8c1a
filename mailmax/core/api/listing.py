"""Filtering, sorting and pagination shared by the list routes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from mailmax.core.api.errors import ApiError

T = TypeVar("T")


class ListQuery(BaseModel):
    """Query parameters every list route takes."""

    model_config = ConfigDict(extra="forbid")

    q: str = Field("", max_length=200, description="Only items whose name contains this text.")
    sort: str = Field("", description="Field to sort by (default: the name).")
    desc: bool = Field(False, description="Sort in descending order.")
    offset: int = Field(0, ge=0, description="Items to skip.")
    limit: int = Field(100, ge=1, le=1000, description="Most items to return.")


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    total: int = Field(description="Items matching the filters, on every page.")
    offset: int
    limit: int


def page(
    items: Sequence[Any],
    query: ListQuery,
    keys: dict[str, Callable[[Any], Any]],
    default: str,
    convert: Callable[[Any], Any] = lambda item: item,
) -> dict[str, Any]:
    """The page of ``items`` that ``query`` asks for, sorted by one of ``keys``."""
    name = query.sort or default
    if name not in keys:
        raise ApiError(422, f"cannot sort by {name!r}; use one of {', '.join(sorted(keys))}")
    ordered = sorted(items, key=keys[name], reverse=query.desc)
    chosen = ordered[query.offset : query.offset + query.limit]
    return {
        "items": [convert(item) for item in chosen],
        "total": len(ordered),
        "offset": query.offset,
        "limit": query.limit,
    }
