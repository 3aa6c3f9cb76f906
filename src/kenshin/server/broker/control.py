"""Requests to Mosquitto's dynamic-security API (``$CONTROL/dynamic-security/v1``) over an
MQTT connection the caller owns, and their answers matched to them.

Used by the process that runs the ingest (over its own session) and by an API-only process
(role ``api``, over a small connection of its own: `BrokerLink`). Credential changes that
arrive while one message is out go together into the next, in messages kept under the
broker's packet limit. Gathering saves round trips, not the plugin's work: Mosquitto 2.0's
plugin writes its whole state after every command that changes it (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import aiomqtt

from .dynsec import CONTROL_TOPIC, RESPONSE_TOPIC

__all__ = ["RESPONSE_TOPIC", "DynsecControl"]

log = logging.getLogger(__name__)
BATCH_S = 0.02  # credential changes gathered into one message to the broker
# A message's JSON stays well under the broker's max_packet_size (64 KiB, mosquitto.py):
# an oversized one makes Mosquitto drop the whole connection. About 60 grants fit.
MESSAGE_BYTES = 48 * 1024
ANSWER_TIMEOUT_S = 10.0


class DynsecControl:
    """Sends command lists and waits for the broker's answers. `attach` a connected client
    subscribed to `RESPONSE_TOPIC`, feed it each answer with `answered`."""

    def __init__(self) -> None:
        self._client: aiomqtt.Client | None = None
        self._attached = asyncio.Event()
        self._waiting: dict[str, tuple[asyncio.Future, int]] = {}
        self._got: dict[str, list[dict]] = {}
        self._batch: list[tuple[list[dict], asyncio.Future]] = []
        self._sender: asyncio.Task | None = None

    def attach(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._attached.set()

    def detach(self) -> None:
        self._client = None
        self._attached.clear()

    async def send(self, commands: list[dict], timeout_s: float) -> None:
        """Send `commands`, wait for all their answers; a refused command is an error
        (deleting what does not exist is not)."""
        await asyncio.wait_for(self._attached.wait(), timeout_s)
        tag = secrets.token_hex(8)
        tagged = [{**c, "correlationData": f"{tag}:{i}"} for i, c in enumerate(commands)]
        answered = asyncio.get_running_loop().create_future()
        self._waiting[tag] = (answered, len(tagged))
        try:
            self._batch.append((tagged, answered))
            if self._sender is None or self._sender.done():
                self._sender = asyncio.create_task(self._send_batches())
            responses = await asyncio.wait_for(answered, timeout_s)
        finally:
            self._waiting.pop(tag, None)
            self._got.pop(tag, None)
        failed = [
            r for r in responses if r.get("error") and not r.get("command", "").startswith("delete")
        ]
        if failed:
            raise RuntimeError(f"the broker refused {failed[0]['command']}: {failed[0]['error']}")

    async def _send_batches(self) -> None:
        """One message at a time for everything that came meanwhile (see the module doc),
        as many messages as `MESSAGE_BYTES` asks."""
        while True:
            await asyncio.sleep(BATCH_S)
            batch, self._batch = self._batch, []
            for message, futures in _messages(batch):
                if self._client is None:
                    return  # their senders time out and are told so
                await self._client.publish(CONTROL_TOPIC, message, qos=1)
                await asyncio.wait(futures, timeout=ANSWER_TIMEOUT_S)
            if not batch:
                return

    def answered(self, payload: bytes) -> None:
        """One message from `RESPONSE_TOPIC`."""
        try:
            responses: list[dict[str, Any]] = json.loads(payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("an unreadable answer from the broker's control API")
            return
        for response in responses:
            tag = str(response.get("correlationData", "")).split(":")[0]
            waiting = self._waiting.get(tag)
            if waiting is None:
                continue
            future, count = waiting
            got = self._got.setdefault(tag, [])
            got.append(response)
            if len(got) == count and not future.done():
                future.set_result(self._got.pop(tag))


def _messages(
    batch: list[tuple[list[dict], asyncio.Future]],
) -> Iterator[tuple[str, list[asyncio.Future]]]:
    """The waiting requests as messages of at most `MESSAGE_BYTES` (one request is never
    split: its answers must arrive together), each with the futures it answers."""
    commands: list[dict] = []
    futures: list[asyncio.Future] = []
    size = 0
    for tagged, answered in batch:
        request_size = len(json.dumps(tagged))
        if futures and size + request_size > MESSAGE_BYTES:
            yield json.dumps({"commands": commands}), futures
            commands, futures, size = [], [], 0
        commands += tagged
        futures.append(answered)
        size += request_size
    if futures:
        yield json.dumps({"commands": commands}), futures
