"""The OpenADR 3.0.1 VTN over HTTP: its own application, mounted at `BASE`, with its own
OpenAPI document (`BASE/openapi.json`) and the spec's paths, names and shapes, so an
OpenADR 3 client pointed at the base URL works unchanged. Kenshin's /api/v1 conventions
(pages, JST) stay there; here the spec's hold: bare JSON arrays with skip/limit, UTC times,
400 for a malformed object (a problem, as the spec's `problem`).

Every request but the token's carries ``Authorization: Bearer <token>`` from
`POST BASE/auth/token` (`tokens.py`); a client sees its own tenant's VTN only: another
tenant's objects are answered as ones that do not exist (404)."""

# No `from __future__ import annotations`: the routes below are made in a loop, and FastAPI
# reads their parameters' types from the closures.

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection

from ..deps import Conn, get_settings
from ..problems import PROBLEM_JSON, Problem, ProblemDetail, install_problem_handlers
from . import models, notify, queries, service, tokens
from .auth import Client, find_client

__all__ = ["BASE", "vtn_app"]

BASE = "/openadr3/3.0.1"
_bearer = HTTPBearer(auto_error=False, description="A token from POST auth/token")
_PROBLEM = {"model": ProblemDetail, "content": {PROBLEM_JSON: {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {**_PROBLEM, "description": d}
    for s, d in ((400, "Bad Request"), (401, "Unauthorized"), (403, "Forbidden"),
                 (404, "Not Found"), (409, "Conflict"), (413, "Body too large (bodylimit.py)"),
                 (422, "Unprocessable"), (503, "Busy"))
}  # fmt: skip
WRITERS = {
    "PROGRAM": ("bl",),
    "EVENT": ("bl",),
    "REPORT": ("ven",),
    "SUBSCRIPTION": ("bl", "ven"),
    "VEN": ("bl", "ven"),
    "RESOURCE": ("bl", "ven"),
}
Skip = Annotated[int, Query(ge=0, le=2**31 - 1, description="records to skip")]
Limit = Annotated[int, Query(ge=0, le=50, description="records at most")]
TargetType = Annotated[str | None, Query(alias="targetType", max_length=128)]
TargetValues = Annotated[list[str] | None, Query(alias="targetValues", max_length=100)]
IdQuery = Annotated[str | None, Query(max_length=128, pattern=r"^[a-zA-Z0-9_-]*$")]


def _client(
    conn: Conn, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Client:
    client = find_client(conn, bearer.credentials) if bearer is not None else None
    if client is None:
        raise Problem(
            401, "a valid, unexpired bearer token from auth/token is needed",
            headers={"WWW-Authenticate": 'Bearer realm="openadr"'},
        )  # fmt: skip
    return client


Caller = Annotated[Client, Depends(_client)]


def _json(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(value, status_code=status)


def _found(conn: Connection, client: Client, object_type: str, object_id: str):
    row = queries.get_object(conn, client.tenant_id, object_type, object_id)
    if row is None or not queries.visible(conn, client, row):
        raise Problem(404, f"no such {object_type.lower()}")
    return row


def _may_write(client: Client, object_type: str) -> None:
    if client.role not in WRITERS[object_type]:
        raise Problem(403, f"a {client.role} client may not write {object_type.lower()}s")


def _notify(request: Request, conn: Connection, row, operation: str, obj: dict) -> None:
    found = notify.deliveries(conn, row, operation, obj)
    if found:
        allow = get_settings(request).webhooks_allow_private
        request.state.after_commit.append(lambda: notify.send_all(found, allow))


def _page(rows: list, skip: int, limit: int) -> list[dict]:
    return [queries.spec_json(row) for row in rows[skip : skip + limit]]


def _write(request: Request, conn: Connection, call, *args, **kwargs):
    try:
        return call(conn, *args, allow_private=get_settings(request).webhooks_allow_private,
                    **kwargs)  # fmt: skip
    except service.VtnError as err:
        raise Problem(err.status, err.detail) from None


def _object_routes(router: APIRouter, plural: str, object_type: str, id_name: str) -> None:
    """POST /{plural}, GET/PUT/DELETE /{plural}/{id}: the same for every top-level type."""
    model = models.MODELS[object_type]
    word = object_type.lower()
    path = f"/{plural}/{{{id_name}}}"
    ObjectIdPath = Annotated[str, Path(alias=id_name, max_length=128)]

    def create(body: model, request: Request, conn: Conn, client: Caller) -> JSONResponse:  # type: ignore[valid-type]
        _may_write(client, object_type)
        row = _write(request, conn, service.create, client, body, object_type=object_type)
        obj = queries.spec_json(row)
        _notify(request, conn, row, "POST", obj)
        return _json(obj, 201)

    def read(object_id: ObjectIdPath, conn: Conn, client: Caller) -> JSONResponse:
        return _json(queries.spec_json(_found(conn, client, object_type, object_id)))

    def change(
        object_id: ObjectIdPath,
        body: model,
        request: Request,
        conn: Conn,
        client: Caller,  # type: ignore[valid-type]
    ) -> JSONResponse:
        row = _found(conn, client, object_type, object_id)
        _may_write(client, object_type)
        row = _write(request, conn, service.replace, client, row, body)
        obj = queries.spec_json(row)
        _notify(request, conn, row, "PUT", obj)
        return _json(obj)

    def remove(object_id: ObjectIdPath, request: Request, conn: Conn, client: Caller):
        row = _found(conn, client, object_type, object_id)
        _may_write(client, object_type)
        obj = queries.spec_json(row)
        try:
            service.remove(conn, row)
        except service.VtnError as err:
            raise Problem(err.status, err.detail) from None
        _notify(request, conn, row, "DELETE", obj)
        return _json(obj)

    ok = {"model": model, "description": "OK"}
    tag = [plural]
    router.add_api_route(
        f"/{plural}",
        create,
        methods=["POST"],
        status_code=201,
        tags=tag,
        summary=f"create a {word}",
        responses={201: {"model": model, "description": "Created"}},
    )
    router.add_api_route(
        path, read, methods=["GET"], tags=tag, summary=f"a {word} by its id", responses={200: ok}
    )
    router.add_api_route(
        path, change, methods=["PUT"], tags=tag, summary=f"update a {word}", responses={200: ok}
    )
    router.add_api_route(path, remove, methods=["DELETE"], tags=tag,
                         summary=f"delete a {word}", responses={200: ok})  # fmt: skip


router = APIRouter(responses=ERRORS)
for _plural, _type, _id in (
    ("programs", "PROGRAM", "programID"),
    ("events", "EVENT", "eventID"),
    ("reports", "REPORT", "reportID"),
    ("subscriptions", "SUBSCRIPTION", "subscriptionID"),
    ("vens", "VEN", "venID"),
):
    _object_routes(router, _plural, _type, _id)


def _listed(conn: Connection, client: Client, rows: list, target_type, target_values) -> list:
    return [
        row for row in rows
        if queries.visible(conn, client, row)
        and queries.matches_targets(row.body, target_type, target_values)
    ]  # fmt: skip


def _list_route(path: str, model, summary: str):
    return router.get(
        path, summary=summary, tags=[path.split("/")[1]],
        responses={200: {"model": list[model], "description": "OK"}},
    )  # fmt: skip


@_list_route("/programs", models.Program, "search programs")
def search_programs(
    conn: Conn, client: Caller, targetType: TargetType = None,
    targetValues: TargetValues = None, skip: Skip = 0, limit: Limit = 50,
) -> JSONResponse:  # fmt: skip
    rows = queries.list_objects(conn, client.tenant_id, "PROGRAM")
    return _json(_page(_listed(conn, client, rows, targetType, targetValues), skip, limit))


@_list_route("/events", models.Event, "search events")
def search_events(
    conn: Conn, client: Caller, programID: IdQuery = None,
    targetType: TargetType = None, targetValues: TargetValues = None,
    skip: Skip = 0, limit: Limit = 50,
) -> JSONResponse:  # fmt: skip
    rows = queries.list_objects(conn, client.tenant_id, "EVENT", program_id=programID)
    return _json(_page(_listed(conn, client, rows, targetType, targetValues), skip, limit))


@_list_route("/reports", models.Report, "search reports")
def search_reports(
    conn: Conn, client: Caller, programID: IdQuery = None, eventID: IdQuery = None,
    clientName: Annotated[str | None, Query(max_length=128)] = None,
    skip: Skip = 0, limit: Limit = 50,
) -> JSONResponse:  # fmt: skip
    rows = queries.list_objects(conn, client.tenant_id, "REPORT", program_id=programID,
                                name=clientName)  # fmt: skip
    if eventID is not None:
        rows = [row for row in rows if row.parent_id == queries.parse_id(eventID)]
    return _json(_page(_listed(conn, client, rows, None, None), skip, limit))


@_list_route("/subscriptions", models.Subscription, "search subscriptions")
def search_subscriptions(
    conn: Conn, client: Caller, programID: IdQuery = None,
    clientName: Annotated[str | None, Query(max_length=128)] = None,
    targetType: TargetType = None, targetValues: TargetValues = None,
    objects: Annotated[list[models.ObjectType] | None, Query(max_length=6)] = None,
    skip: Skip = 0, limit: Limit = 50,
) -> JSONResponse:  # fmt: skip
    rows = queries.list_objects(conn, client.tenant_id, "SUBSCRIPTION", program_id=programID,
                                name=clientName)  # fmt: skip
    if objects:
        rows = [
            row for row in rows
            if any(set(objects) & set(op["objects"]) for op in row.body["objectOperations"])
        ]  # fmt: skip
    return _json(_page(_listed(conn, client, rows, targetType, targetValues), skip, limit))


@_list_route("/vens", models.Ven, "search VENs")
def search_vens(
    conn: Conn, client: Caller, targetType: TargetType = None,
    targetValues: TargetValues = None,
    venName: Annotated[str | None, Query(max_length=128)] = None,
    skip: Skip = 0, limit: Limit = 50,
) -> JSONResponse:  # fmt: skip
    rows = queries.list_objects(conn, client.tenant_id, "VEN", name=venName)
    return _json(_page(_listed(conn, client, rows, targetType, targetValues), skip, limit))


from . import resources  # noqa: E402  (its routes go on `router` too)

resources.add_routes(router)


async def _on_invalid(_request: Request, exc: Exception) -> JSONResponse:
    """A malformed object or parameter: the spec's 400, a problem."""
    assert isinstance(exc, RequestValidationError)
    where = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
        for e in exc.errors()[:5]
    )
    return JSONResponse(
        {"type": "about:blank", "title": "Bad Request", "status": 400,
         "detail": f"invalid request: {where}"},
        status_code=400, media_type=PROBLEM_JSON,
    )  # fmt: skip


def vtn_app(parent: FastAPI) -> FastAPI:
    """The VTN's application, sharing `parent`'s state (engine, turns, rate limits)."""
    vtn = FastAPI(
        title="Kenshin OpenADR 3 VTN", version="3.0.1", docs_url=None, redoc_url=None,
        description="The OpenADR 3.0.1 VTN of one Kenshin tenant per client (docs/dr.md).",
    )  # fmt: skip
    vtn.state = parent.state
    install_problem_handlers(vtn)
    vtn.add_exception_handler(RequestValidationError, _on_invalid)
    vtn.include_router(tokens.router)
    vtn.include_router(router)
    return vtn
