"""A RabbitMQ cluster (3.10+, plugins rabbitmq_mqtt, rabbitmq_auth_backend_http,
rabbitmq_auth_backend_cache) as the fleet's broker: why and how in docs/scaling.md.

* **Who may connect, and to what**: the broker asks the server (`rabbitmq_auth.py`,
  served by the API). A gateway logs in with its enrolled credential and a client id equal to its
  username (the broker passes the client id along), so nobody takes over another
  gateway's session; it may publish only on its own uplink topics and receive only its
  own downlink. A new, rotated or revoked credential is in the database the moment the API
  commits it: the next login is judged by it, and nothing in the broker is rewritten or
  reloaded. Logins are never cached; the answers on queues and topics, which depend on
  the username alone, are cached by the broker (`node_config`).
* **Revoking** also ends the gateway's open connection, through the management API
  (`close_connections`).
* **The ingest** consumes from one durable quorum queue, replicated on every node,
  that collects every gateway's uplink from `amq.topic` (`AmqpSource`): several ingest
  processes are competing consumers on it, a message is acknowledged after its commit,
  and a killed node loses nothing that was confirmed to a gateway (RabbitMQ's MQTT
  plugin sends the PUBACK only after the queue confirmed the message).

RabbitMQ maps MQTT topics to routing keys with `.` for `/` (`k/GW-1/d` is `k.GW-1.d`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from .access import TOPIC_ROOT, UPLINK_CHANNELS
from .rabbitmq_auth import AUTH_PREFIX

__all__ = [
    "INGEST_QUEUE",
    "AmqpSource",
    "close_connections",
    "close_connections_soon",
    "node_config",
]

log = logging.getLogger(__name__)
INGEST_QUEUE = "kenshin.ingest"
MAX_MESSAGE_SIZE = 64 * 1024


def node_config(server_url: str, cache_ttl_s: int = 300) -> str:
    """The rabbitmq.conf lines that make a node ask the server at `server_url` (an API
    process, on a network only the brokers reach). The node's own admin account (internal
    database) stays for the management API."""
    base = server_url.rstrip("/") + AUTH_PREFIX
    return "\n".join(
        [
            "auth_backends.1.authn = http",  # logins: never cached (a revoked one ends at once)
            "auth_backends.1.authz = cache",  # queues, topics: by username alone, cached
            "auth_backends.2 = internal",
            "auth_cache.cached_backend = http",
            f"auth_cache.cache_ttl = {cache_ttl_s * 1000}",
            "auth_http.http_method = post",
            f"auth_http.user_path = {base}/user",
            f"auth_http.vhost_path = {base}/vhost",
            f"auth_http.resource_path = {base}/resource",
            f"auth_http.topic_path = {base}/topic",
            "mqtt.allow_anonymous = false",
            # A batch is a few hundred bytes, a command result a few kB: anything far
            # larger is refused (not acknowledged, not routed) before it costs memory.
            f"max_message_size = {MAX_MESSAGE_SIZE}",
            # A gateway's persistent session (its commands while it is away) in a queue
            # replicated on the nodes: a classic one lives on the node the gateway first
            # used, and while that node is down the gateway cannot subscribe anywhere.
            "mqtt.durable_queue_type = quorum",
        ]
    )


# -- revoking ------------------------------------------------------------------------------


STATS_INTERVAL_S = 5.0  # the management API lists a new connection after up to this


def close_connections(management_url: str, username: str, timeout_s: float = 10.0) -> int:
    """Close every connection `username` has on the cluster (any node answers for all),
    looking twice: a connection made in the last few seconds is not listed yet. The number
    closed; errors are logged (the login is refused anyway)."""
    url = httpx.URL(management_url)
    auth = (url.username, url.password) if url.username else None
    base = str(url.copy_with(username=None, password=None)).rstrip("/")
    closed = 0
    try:
        with httpx.Client(auth=auth, timeout=timeout_s) as client:
            for attempt in range(2):
                if attempt:
                    time.sleep(STATS_INTERVAL_S + 1)
                found = client.get(f"{base}/api/connections", params={"columns": "name,user"})
                found.raise_for_status()
                for connection in found.json():
                    if connection.get("user") != username:
                        continue
                    client.delete(
                        f"{base}/api/connections/{urllib.parse.quote(connection['name'], safe='')}",
                        headers={"X-Reason": "credential revoked"},
                    )
                    closed += 1
    except httpx.HTTPError as err:
        log.warning("could not close %s's broker connections: %s", username, err)
    return closed


def close_connections_soon(management_url: str, username: str, timeout_s: float = 10.0) -> None:
    """`close_connections` in a thread of its own: the revoking request does not wait for
    its second look."""
    import threading

    threading.Thread(
        target=close_connections, args=(management_url, username, timeout_s), daemon=True
    ).start()


# -- the ingest's queue --------------------------------------------------------------------


@dataclass
class Delivery:
    topic: str
    payload: bytes
    ack: Callable[[], Awaitable[None]]


@dataclass
class AmqpSource:
    """The uplink of every gateway, from the replicated queue; tries the nodes in turn."""

    urls: list[str]
    prefetch: int = 2000

    async def deliveries(self, connected: Callable[[], Any]) -> AsyncIterator[Delivery]:
        import aio_pika

        connection = await self._connect(aio_pika)
        lost = asyncio.get_running_loop().create_future()
        taking: asyncio.Future | None = None
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.declare_queue(
                INGEST_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
            )
            exchange = await channel.get_exchange("amq.topic")
            for channel_letter in sorted(UPLINK_CHANNELS):
                await queue.bind(exchange, routing_key=f"{TOPIC_ROOT}.*.{channel_letter}")
            # A lost connection ends the deliveries with an error (the supervisor then
            # connects to the next node); a plain iterator would wait on it forever.
            inbox: asyncio.Queue = asyncio.Queue()
            connection.close_callbacks.add(lambda *why: _set_lost(lost, why))
            await queue.consume(inbox.put)
            connected()
            while True:
                taking = asyncio.ensure_future(inbox.get())
                await asyncio.wait({taking, lost}, return_when=asyncio.FIRST_COMPLETED)
                if not taking.done():
                    taking.cancel()
                    lost.result()  # raises
                message = taking.result()
                topic = (message.routing_key or "").replace(".", "/")
                yield Delivery(topic, message.body, message.ack)
        finally:
            # Ended for any reason (the consumer stopped, the MQTT side failed): nothing is
            # left pending to be logged as "never retrieved" or "destroyed but pending".
            if taking is not None:
                taking.cancel()
            if lost.done() and not lost.cancelled():
                lost.exception()  # seen: the loss may have come while a delivery was out
            lost.cancel()  # no loss set from here on (the close below calls back)
            with contextlib.suppress(Exception):
                await connection.close()

    async def _connect(self, aio_pika: Any):
        errors = []
        started = time.monotonic()
        for url in self.urls:
            try:
                return await aio_pika.connect(url, timeout=10)
            except Exception as err:  # the next node
                errors.append(f"{_redact(url)}: {err}")
        raise ConnectionError(
            f"no RabbitMQ node reachable in {time.monotonic() - started:.0f} s: "
            + "; ".join(errors)
        )


def _set_lost(lost: asyncio.Future, why: tuple) -> None:
    if not lost.done():
        cause = next((w for w in why if isinstance(w, BaseException)), None)
        lost.set_exception(ConnectionError(f"the RabbitMQ connection was lost: {cause}"))


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}:{parts.port}"
