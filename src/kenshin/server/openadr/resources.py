"""A VEN's resources: /vens/{venID}/resources and /vens/{venID}/resources/{resourceID}.
Whoever may see the VEN sees its resources; VEN clients and business logic write them."""

# No `from __future__ import annotations`: FastAPI reads the parameters' types.

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from ..problems import Problem
from . import models, queries, service
from .api import (
    Caller,
    Conn,
    Limit,
    Skip,
    TargetType,
    TargetValues,
    _found,
    _json,
    _listed,
    _may_write,
    _notify,
    _page,
    _write,
)

__all__ = ["add_routes"]

VenId = Annotated[str, Path(alias="venID", max_length=128)]
ResourceId = Annotated[str, Path(alias="resourceID", max_length=128)]


def add_routes(router: APIRouter) -> None:
    tag = ["vens"]
    one = {200: {"model": models.Resource, "description": "OK"}}

    @router.get(
        "/vens/{venID}/resources",
        tags=tag,
        summary="search a VEN's resources",
        responses={200: {"model": list[models.Resource], "description": "OK"}},
    )
    def search_resources(
        ven_id: VenId,
        conn: Conn,
        client: Caller,
        targetType: TargetType = None,
        targetValues: TargetValues = None,
        resourceName: Annotated[str | None, Query(max_length=128)] = None,
        skip: Skip = 0,
        limit: Limit = 50,
    ) -> JSONResponse:
        ven = _found(conn, client, "VEN", ven_id)
        rows = queries.list_objects(
            conn, client.tenant_id, "RESOURCE", parent_id=ven.id, name=resourceName
        )
        return _json(_page(_listed(conn, client, rows, targetType, targetValues), skip, limit))

    @router.post(
        "/vens/{venID}/resources",
        tags=tag,
        summary="create a resource",
        status_code=201,
        responses={201: {"model": models.Resource, "description": "Created"}},
    )
    def create_resource(
        ven_id: VenId, body: models.Resource, request: Request, conn: Conn, client: Caller
    ) -> JSONResponse:
        ven = _found(conn, client, "VEN", ven_id)
        _may_write(client, "RESOURCE")
        row = _write(
            request, conn, service.create, client, body, object_type="RESOURCE", parent_id=ven.id
        )
        obj = queries.spec_json(row)
        _notify(request, conn, row, "POST", obj)
        return _json(obj, 201)

    def _resource_or_404(conn, client, ven_id: str, resource_id: str):
        ven = _found(conn, client, "VEN", ven_id)
        row = _found(conn, client, "RESOURCE", resource_id)
        if row.parent_id != ven.id:
            raise Problem(404, "no such resource")
        return row

    @router.get(
        "/vens/{venID}/resources/{resourceID}", tags=tag, summary="a resource", responses=one
    )
    def read_resource(
        ven_id: VenId, resource_id: ResourceId, conn: Conn, client: Caller
    ) -> JSONResponse:
        return _json(queries.spec_json(_resource_or_404(conn, client, ven_id, resource_id)))

    @router.put(
        "/vens/{venID}/resources/{resourceID}", tags=tag, summary="update a resource", responses=one
    )
    def update_resource(
        ven_id: VenId,
        resource_id: ResourceId,
        body: models.Resource,
        request: Request,
        conn: Conn,
        client: Caller,
    ) -> JSONResponse:
        row = _resource_or_404(conn, client, ven_id, resource_id)
        _may_write(client, "RESOURCE")
        row = _write(request, conn, service.replace, client, row, body)
        obj = queries.spec_json(row)
        _notify(request, conn, row, "PUT", obj)
        return _json(obj)

    @router.delete(
        "/vens/{venID}/resources/{resourceID}", tags=tag, summary="delete a resource", responses=one
    )
    def delete_resource(
        ven_id: VenId, resource_id: ResourceId, request: Request, conn: Conn, client: Caller
    ) -> JSONResponse:
        row = _resource_or_404(conn, client, ven_id, resource_id)
        _may_write(client, "RESOURCE")
        obj = queries.spec_json(row)
        service.remove(conn, row)
        _notify(request, conn, row, "DELETE", obj)
        return _json(obj)
