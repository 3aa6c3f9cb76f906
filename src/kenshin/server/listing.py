"""Lists that stay fast at hundreds of thousands of rows: search, filters, a sort and
keyset ("cursor") pagination, never OFFSET.

A page is ``{"items": [...], "next_cursor": "..." | null}``. The cursor is opaque to the
client: base64url of the last row's sort value and id. A forged cursor can only move the
page's start within rows the caller may see anyway (the tenant filter is always applied),
so it is checked for shape, not signed. `sort` names a field, ``-field`` for descending;
ties break by id, so every row appears exactly once across pages even as rows are added.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, and_, func, literal, or_, tuple_

from .problems import Problem

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Cursor", "Limit", "Page", "Search", "paginate"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT}")]
Cursor = Annotated[str | None, Query(max_length=500, description="next_cursor of the last page")]
Search = Annotated[
    str | None, Query(max_length=100, description="case-insensitive substring, any text field")
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def _encode(value: Any, row_id: int) -> str:
    raw = json.dumps([value, row_id], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, row_id = json.loads(raw)
        if type(row_id) is not int or not isinstance(value, str | int | float):
            raise ValueError
        return value, row_id
    except (ValueError, TypeError, json.JSONDecodeError):
        raise Problem(400, "not a cursor from this list: start again without one") from None


def search_filter(q: str | None, columns: Sequence[ColumnElement]) -> ColumnElement | None:
    """Rows where any column holds `q`, ignoring case (Japanese text as it is)."""
    if not q:
        return None
    needle = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return or_(*(func.lower(func.coalesce(c, "")).like(needle, escape="\\") for c in columns))


def paginate(
    query: Select,
    *,
    sortable: dict[str, ColumnElement],
    id_column: ColumnElement,
    sort: str,
    limit: int,
    cursor: str | None,
) -> tuple[Select, Any]:
    """The query limited to one page (one row more, to know whether another follows), and
    a function that turns the fetched rows into (rows, next_cursor)."""
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    if name not in sortable:
        raise Problem(400, f"sort by one of {', '.join(sorted(sortable))} (-name: descending)")
    column = sortable[name]
    key = tuple_(column, id_column)
    if cursor is not None:
        value, row_id = _decode(cursor)
        after = tuple_(literal(value), literal(row_id))
        query = query.where(key < after if descending else key > after)
    order = (column.desc(), id_column.desc()) if descending else (column, id_column)
    query = query.order_by(*order).limit(limit + 1)

    def page(rows: list) -> tuple[list, str | None]:
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]._mapping
        return rows[:limit], _encode(last["sort_key"], last[id_column.key])

    return query.add_columns(column.label("sort_key")), page


def combine(*conditions: ColumnElement | None) -> ColumnElement:
    return and_(*(c for c in conditions if c is not None))
