"""Lists that stay fast at hundreds of thousands of rows: search, filters, a sort and
keyset ("cursor") pagination, never OFFSET.

A page is ``{"items": [...], "next_cursor": "..." | null}``. The cursor is opaque to the
client: base64url of the sort's name, the last row's sort value and its id. It is checked,
not signed: a cursor made for another sort, or whose value is not of the sort field's type,
is a 400 problem; a forged one that passes can only move the page's start within rows the
caller may see anyway (the tenant filter is always applied). `sort` names a field,
``-field`` for descending; ties break by id, so every row appears exactly once across pages
even as rows are added. Sort fields must never be NULL (wrap nullable ones in coalesce).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field
from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    tuple_,
)

from .problems import Problem

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Cursor",
    "Limit",
    "Page",
    "combine",
    "matching",
    "one_page",
    "page_of",
    "page_values",
    "paginate",
    "search_filter",
    "search_needle",
    "search_parameter",
    "sort_parameter",
    "sorted_page",
    "tenant_page",
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_BIGINT = 2**63  # ids and integer sort values beyond it are no row's
T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, 1 to {MAX_LIMIT}")]
Cursor = Annotated[
    str | None, Query(max_length=1000, description="the previous page's next_cursor")
]


def search_parameter(fields: str) -> Any:
    """The `q` query parameter's type for a list searching `fields` (said in words)."""
    return Annotated[
        str | None,
        # No NUL: PostgreSQL text cannot hold it (a 422 here, not a 500 from the driver).
        Query(
            max_length=100,
            pattern="^[^\\x00]*$",
            description=f"case-insensitive substring of {fields}",
        ),
    ]


def sort_parameter(fields: Sequence[str]) -> Any:
    """The `sort` query parameter's type for a list sortable by `fields`."""
    return Annotated[
        str, Query(description=f"{', '.join(fields)}; -name: descending (ties: by id)")
    ]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


def one_page(items: Sequence[T]) -> Page[T]:
    """A list that is never long (a tenant's users, the rules, a day's hours) as the one
    page every list answers: all of it, `next_cursor` null."""
    return Page(items=list(items), next_cursor=None)


def _encode(sort: str, value: Any, row_id: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([sort, value, row_id], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


_NOT_OURS = "not a cursor from this list: start again without one"


def _decode(cursor: str, sort: str, python_type: type) -> tuple[Any, int]:
    """The cursor's (sort value, id), checked against the sort it must have been made for
    and the sort field's type (a forged value must reach the database as a 400 here, not
    as a type error there)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, value, row_id = json.loads(raw)
        if python_type is datetime and isinstance(value, str):
            value = datetime.fromisoformat(value)
    except (ValueError, TypeError, binascii.Error):
        raise Problem(400, _NOT_OURS) from None
    if made_for != sort:
        raise Problem(400, "the cursor was made for another sort: start again without one")
    if type(value) is int:
        fits = -_BIGINT <= value < _BIGINT
    elif type(value) is datetime:
        fits = value.tzinfo is not None
    else:
        fits = "\x00" not in str(value)  # PostgreSQL text cannot hold NUL
    if type(value) is not python_type or not fits:
        raise Problem(400, _NOT_OURS)
    if type(row_id) is not int or not 0 < row_id < _BIGINT:
        raise Problem(400, _NOT_OURS)
    return value, row_id


def search_filter(q: str | None, columns: Sequence[ColumnElement]) -> ColumnElement | None:
    """Rows where any column holds `q`, ignoring case; `%` and `_` are plain characters.

    Japanese text has no case and matches as it is (lower() leaves it alone on both
    backends)."""
    if not q:
        return None
    return matching(columns, search_needle(q))


def search_needle(q: str) -> str:
    """The LIKE pattern `search_filter` looks for `q` with."""
    return "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def matching(columns: Sequence[ColumnElement], needle: str | ColumnElement) -> ColumnElement:
    """Rows where any column, lower-cased, is LIKE `needle`: a `search_needle`, or a bound
    parameter that will hold one (a statement built once)."""
    return or_(*(func.lower(c).like(needle, escape="\\") for c in columns))


def combine(*conditions: ColumnElement | None) -> ColumnElement:
    """AND of the conditions that apply (None: a filter the request did not ask for)."""
    return and_(*(c for c in conditions if c is not None))


def _sort_column(sortable: dict[str, ColumnElement], sort: str) -> ColumnElement:
    name = sort.removeprefix("-")
    if name not in sortable:
        raise Problem(400, f"sort by one of {', '.join(sorted(sortable))} (-name: descending)")
    return sortable[name]


def sorted_page(
    query: Select,
    *,
    sortable: dict[str, ColumnElement],
    id_column: ColumnElement,
    sort: str,
    after: bool,
) -> Select:
    """`query` in `sort`'s order, one page of it, with its values as bound parameters (a
    list's statement can then be built once for each sort and filter, and SQLAlchemy's
    compiled cache is hit without building and walking a `select()` again): the page holds
    `page_rows` rows and, with `after`, starts after the row whose sort value and id are
    `after_value` and `after_id`. `page_values` gives them.

    `sortable` maps the names a client may sort by to never-NULL expressions; the query's
    rows gain a ``sort_key`` column, and must carry `id_column` under its own name."""
    descending = sort.startswith("-")
    column = _sort_column(sortable, sort)
    if after:
        key = tuple_(column, id_column)
        start = tuple_(bindparam("after_value", type_=column.type),
                       bindparam("after_id", type_=id_column.type))  # fmt: skip
        query = query.where(key < start if descending else key > start)
    order = (column.desc(), id_column.desc()) if descending else (column, id_column)
    return (
        query.add_columns(column.label("sort_key")).order_by(*order).limit(bindparam("page_rows"))
    )


def page_values(
    sortable: dict[str, ColumnElement], sort: str, limit: int, cursor: str | None
) -> dict[str, Any]:
    """The bound values of a `sorted_page` (one row more than `limit`, to know whether
    another page follows); a 400 problem for a cursor not made for this list and sort."""
    values: dict[str, Any] = {"page_rows": limit + 1}
    if cursor is not None:
        column = _sort_column(sortable, sort)
        # A TypeDecorator (UTCDateTime) tells its Python type through the type it wraps.
        python_type = getattr(column.type, "impl_instance", column.type).python_type
        values["after_value"], values["after_id"] = _decode(cursor, sort, python_type)
    return values


def page_of(
    rows: Sequence[Row], *, sort: str, limit: int, id_key: str
) -> tuple[Sequence[Row], str | None]:
    """A `sorted_page`'s fetched rows as (the page's rows, next_cursor)."""
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]._mapping
    return rows[:limit], _encode(sort, last["sort_key"], last[id_key])


def paginate(
    query: Select,
    *,
    sortable: dict[str, ColumnElement],
    id_column: ColumnElement,
    sort: str,
    limit: int,
    cursor: str | None,
) -> tuple[Select, Callable[[Sequence[Row]], tuple[Sequence[Row], str | None]]]:
    """The query limited to one page (`sorted_page` with its values), and a function that
    turns the fetched rows into (rows, next_cursor)."""
    page = sorted_page(
        query, sortable=sortable, id_column=id_column, sort=sort, after=cursor is not None
    )
    values = page_values(sortable, sort, limit, cursor)
    return page.params(values), lambda rows: page_of(
        rows, sort=sort, limit=limit, id_key=id_column.key
    )


def tenant_page(
    conn: Connection,
    table: Table,
    tenant_id: int,
    states: Sequence[str] | None,
    newest: str,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Row], str | None]:
    """A page of a tenant's rows of `table` (a room's events, rollouts...), the latest of
    its column `newest` first, of these `state`s if given."""
    c = table.c
    query = select(table).where(c.tenant_id == tenant_id)
    if states:
        query = query.where(c.state.in_(states))
    query, page = paginate(
        query, sortable={newest: c[newest]}, id_column=c.id, sort=f"-{newest}",
        limit=limit, cursor=cursor,
    )  # fmt: skip
    return page(conn.execute(query).all())
