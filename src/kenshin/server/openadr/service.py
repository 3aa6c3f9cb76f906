"""Writes of the VTN's objects: create, replace and delete, each checked against what the
tenant's VTN holds (a program's name is unique, an event's program exists, a report's
event is of its program...), inside the request's transaction."""

from __future__ import annotations

from sqlalchemy import Connection, Row, delete, func, insert, select, update

from .. import schema_base
from ..webhooks.targets import UnsafeTarget, resolve_target
from . import models, queries
from .auth import Client
from .tables import openadr_objects

__all__ = ["VtnError", "create", "remove", "replace"]

o = openadr_objects.c
_NAME = {
    "PROGRAM": "programName",
    "REPORT": "clientName",
    "SUBSCRIPTION": "clientName",
    "VEN": "venName",
    "RESOURCE": "resourceName",
}
_UNIQUE = {"PROGRAM": "programName", "VEN": "venName", "RESOURCE": "resourceName"}


class VtnError(Exception):
    """A request the VTN refuses: `status` (400, 404, 409) and why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _program(conn: Connection, tenant_id: int, program_id: str) -> Row:
    program = queries.get_object(conn, tenant_id, "PROGRAM", program_id)
    if program is None:
        raise VtnError(400, f"programID {program_id!r} names no program of this VTN")
    return program


def _columns(
    conn: Connection,
    client: Client,
    object_type: str,
    body: dict,
    parent_id: int | None,
    *,
    allow_private: bool,
) -> dict:
    """The indexed columns of an object, after checking what it refers to."""
    values: dict = {"name": body.get(_NAME[object_type]) if object_type in _NAME else None}
    if object_type in ("EVENT", "REPORT", "SUBSCRIPTION"):
        values["program_id"] = _program(conn, client.tenant_id, body["programID"]).id
    if object_type == "REPORT":
        event = queries.get_object(conn, client.tenant_id, "EVENT", body["eventID"])
        if event is None or event.program_id != values["program_id"]:
            raise VtnError(400, f"eventID {body['eventID']!r} names no event of that program")
        parent_id = event.id
    if object_type == "SUBSCRIPTION":
        for each in body["objectOperations"]:
            try:
                resolve_target(each["callbackUrl"], allow_private=allow_private)
            except UnsafeTarget as err:
                raise VtnError(400, f"callbackUrl: {err}") from None
    values["parent_id"] = parent_id
    return values


def _unique(conn: Connection, tenant_id: int, object_type: str, values: dict, but: int | None):
    if object_type not in _UNIQUE:
        return
    query = select(func.count()).where(
        o.tenant_id == tenant_id, o.object_type == object_type, o.name == values["name"]
    )
    if object_type == "RESOURCE":
        query = query.where(o.parent_id == values["parent_id"])
    if but is not None:
        query = query.where(o.id != but)
    if conn.execute(query).scalar_one():
        raise VtnError(409, f"a {object_type.lower()} named {values['name']!r} exists")


def create(
    conn: Connection,
    client: Client,
    obj: models.BaseModel,
    *,
    object_type: str,
    parent_id: int | None = None,
    allow_private: bool = False,
) -> Row:
    body = models.stored_body(obj)  # type: ignore[arg-type]
    values = _columns(conn, client, object_type, body, parent_id, allow_private=allow_private)
    _unique(conn, client.tenant_id, object_type, values, None)
    now = schema_base.utcnow()
    row_id = conn.execute(
        insert(openadr_objects)
        .values(tenant_id=client.tenant_id, object_type=object_type, owner=client.id,
                body=body, created_at=now, modified_at=now, **values)
        .returning(o.id)
    ).scalar_one()  # fmt: skip
    return conn.execute(select(openadr_objects).where(o.id == row_id)).one()


def replace(
    conn: Connection,
    client: Client,
    row: Row,
    obj: models.BaseModel,
    *,
    allow_private: bool = False,
) -> Row:
    body = models.stored_body(obj)  # type: ignore[arg-type]
    values = _columns(
        conn, client, row.object_type, body, row.parent_id, allow_private=allow_private
    )
    _unique(conn, client.tenant_id, row.object_type, values, row.id)
    conn.execute(
        update(openadr_objects)
        .where(o.id == row.id)
        .values(body=body, modified_at=schema_base.utcnow(), **values)
    )
    return conn.execute(select(openadr_objects).where(o.id == row.id)).one()


def remove(conn: Connection, row: Row) -> None:
    """Delete the object (a VEN with its resources); a program still referred to by
    events, reports or subscriptions is a 409."""
    if row.object_type == "PROGRAM":
        used = conn.execute(
            select(func.count()).where(o.tenant_id == row.tenant_id, o.program_id == row.id)
        ).scalar_one()
        if used:
            raise VtnError(409, "the program still has events, reports or subscriptions")
    if row.object_type == "VEN":
        conn.execute(
            delete(openadr_objects).where(o.object_type == "RESOURCE", o.parent_id == row.id)
        )
    conn.execute(delete(openadr_objects).where(o.id == row.id))
