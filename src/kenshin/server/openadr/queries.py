"""Reads of the VTN's objects: one object or a list of one type in a tenant, as the
spec's JSON, and who may see which (`visible`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from .auth import Client
from .tables import openadr_objects

__all__ = ["get_object", "list_objects", "matches_targets", "parse_id", "spec_json", "visible"]

o = openadr_objects.c


def parse_id(object_id: str | None) -> int | None:
    """The row id an objectID names, or None: none of ours (ids are decimal digits)."""
    if object_id is None or not (object_id.isascii() and object_id.isdigit()):
        return None
    if len(object_id) > 18:
        return None
    return int(object_id)


def _time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def spec_json(row: Row) -> dict[str, Any]:
    """A row as the spec's object: what the client sent, and what the VTN provisions."""
    made = {
        "id": str(row.id),
        "createdDateTime": _time(row.created_at),
        "modificationDateTime": _time(row.modified_at),
        "objectType": row.object_type,
    }
    body = dict(row.body)
    if row.object_type == "RESOURCE":
        body["venID"] = str(row.parent_id)
    return {**made, **body}


def get_object(conn: Connection, tenant_id: int, object_type: str, object_id: str) -> Row | None:
    row_id = parse_id(object_id)
    if row_id is None:
        return None
    return conn.execute(
        select(openadr_objects).where(
            o.tenant_id == tenant_id, o.object_type == object_type, o.id == row_id
        )
    ).first()


def list_objects(
    conn: Connection,
    tenant_id: int,
    object_type: str,
    *,
    program_id: str | None = None,
    parent_id: int | None = None,
    name: str | None = None,
) -> list[Row]:
    """Every object of a type in the tenant, by id, filtered by the columns asked."""
    query = select(openadr_objects).where(o.tenant_id == tenant_id, o.object_type == object_type)
    if program_id is not None:
        query = query.where(o.program_id == parse_id(program_id))
    if parent_id is not None:
        query = query.where(o.parent_id == parent_id)
    if name is not None:
        query = query.where(o.name == name)
    return list(conn.execute(query.order_by(o.id)))


def visible(conn: Connection, client: Client, row: Row) -> bool:
    """Whether `client` may read `row` (of its tenant): business logic reads everything;
    a VEN programs and events, and its own reports, subscriptions, VEN and resources."""
    if client.role == "bl" or row.object_type in ("PROGRAM", "EVENT"):
        return True
    if row.object_type == "VEN":
        return row.owner == client.id or row.name == client.name
    if row.object_type == "RESOURCE":
        ven = conn.execute(select(openadr_objects).where(o.id == row.parent_id)).first()
        return ven is not None and visible(conn, client, ven)
    return row.owner == client.id


def matches_targets(
    body: dict[str, Any], target_type: str | None, target_values: Iterable[str] | None
) -> bool:
    """The spec's targetType/targetValues filter: an object with a target of that type
    holding one of the values (no filter asked: every object)."""
    if target_type is None:
        return True
    wanted = set(target_values or ())
    for target in body.get("targets") or ():
        if target.get("type") == target_type and (
            not wanted or any(str(v) in wanted for v in target.get("values", ()))
        ):
            return True
    return False
