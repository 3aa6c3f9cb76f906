"""Subscriptions' webhook notifications: when an object is created, updated or deleted,
the VTN POSTs ``{"objectType", "operation", "object"}`` to the callbackUrl of every
subscription of the tenant that asked for that type and operation (and program), with
the subscription's bearerToken as ``Authorization: Bearer`` when it gave one.

Why not the webhooks room's outbox: its deliveries are Kenshin's own (registered hooks,
HMAC-signed, batched per half hour, kept in order per hook); an OpenADR notification is a
plain POST of one object to a URL the client chose, and the spec has the VEN read the VTN
anyway (a notification only says "look now"). So they are sent from the API process,
after the change is committed, a few tries each (`TRIES`), to the address the URL's
checked resolution gave (`webhooks/targets.py`, the same SSRF rules and setting,
`webhooks_allow_private`). One lost when the process stops is lost: the VEN's next poll
sees the object.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Connection, Row, select

from ..webhooks.targets import UnsafeTarget, resolve_target
from . import queries
from .auth import Client
from .tables import openadr_clients

__all__ = ["Delivery", "deliveries", "send_all"]

log = logging.getLogger(__name__)
TRIES = 3
TIMEOUT_S = 10.0
# What a subscription names to be told of an operation: the spec's method, or the name
# this VTN took for it at first (models.Operation).
_NAMED_BY = {"POST": {"POST", "CREATE"}, "PUT": {"PUT", "UPDATE"}, "DELETE": {"DELETE"}}
_pending: set[asyncio.Task] = set()  # held until done (the loop keeps weak references)


@dataclass(frozen=True)
class Delivery:
    url: str
    bearer: str | None
    payload: dict[str, Any]


def _program_of(row: Row) -> int | None:
    return row.id if row.object_type == "PROGRAM" else row.program_id


def deliveries(conn: Connection, row: Row, operation: str, obj: dict) -> list[Delivery]:
    """The notifications one operation (POST, PUT, DELETE) on `row` calls for."""
    wanted = _NAMED_BY[operation]
    found: list[Delivery] = []
    c = openadr_clients.c
    for sub in queries.list_objects(conn, row.tenant_id, "SUBSCRIPTION"):
        owner = conn.execute(
            select(c.id, c.tenant_id, c.role, c.name).where(
                c.id == sub.owner, c.revoked_at.is_(None)
            )
        ).first()
        if owner is None:
            continue
        bound = row.object_type in ("PROGRAM", "EVENT", "REPORT")
        if bound and sub.program_id is not None and sub.program_id != _program_of(row):
            continue
        if not queries.visible(conn, Client(*owner), row):
            continue
        for each in sub.body["objectOperations"]:
            if row.object_type in each["objects"] and wanted & set(each["operations"]):
                payload = {"objectType": row.object_type, "operation": operation, "object": obj}
                found.append(Delivery(each["callbackUrl"], each.get("bearerToken"), payload))
    return found


async def _send(delivery: Delivery, allow_private: bool) -> None:
    for attempt in range(TRIES):
        try:
            target = await asyncio.to_thread(
                resolve_target, delivery.url, allow_private=allow_private
            )
        except UnsafeTarget as err:
            log.warning("openadr notification not sent to %s: %s", delivery.url, err)
            return
        headers = dict(target.headers)
        if delivery.bearer:
            headers["Authorization"] = f"Bearer {delivery.bearer}"
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
                answer = await client.post(
                    target.url, json=delivery.payload, headers=headers,
                    extensions=target.extensions,
                )  # fmt: skip
            if answer.status_code < 500:
                return
            why = f"status {answer.status_code}"
        except (httpx.HTTPError, OSError) as err:
            why = str(err) or type(err).__name__
        if attempt + 1 < TRIES:
            await asyncio.sleep(2**attempt)
    log.warning("openadr notification to %s failed %d times: %s", delivery.url, TRIES, why)


def send_all(found: list[Delivery], allow_private: bool) -> None:
    """Send the notifications in the background (call on the event loop, after commit)."""
    loop = asyncio.get_running_loop()
    for delivery in found:
        task = loop.create_task(_send(delivery, allow_private))
        _pending.add(task)
        task.add_done_callback(_pending.discard)
