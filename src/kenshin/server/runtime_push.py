"""The pushers of `DeviceService` (`runtime.py`): settings (sealed, retained) and
commands out to gateways, by the one ingest process that holds the pushers' lock, and the
periodic sweep of silent gateways and expired commands.

Separate from `runtime.py` (connection and supervision) and `runtime_ingest.py` (what
comes in): this is what goes out, and how one gateway that cannot be served is skipped.
A mixin: it uses the service's `engine`, `box`, `_pushing`, `_published`, `_pushed_at`,
`_unpushable`, `_wake` and `_hold_node_name`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from functools import partial
from typing import Any

import aiomqtt
from sqlalchemy import select

from kenshin.wire import WireError, encode_publish

from . import dr_link
from . import schema as s
from .devices import commands, config, status
from .dr import dispatch as dr_dispatch
from .events import record_event
from .runtime_ingest import UNAVAILABLE

log = logging.getLogger("kenshin.server.runtime")  # its lines keep the name they had
REPUSH_S = 20.0  # a gateway active this long after its settings went out without them
FOLLOWER_RETRY_S = 5.0  # an ingest process that does not push tries for the lock this often


class PushMixin:
    async def _push_loop(self, client: aiomqtt.Client) -> None:
        """Settings and commands out to gateways, by one ingest process of many (the
        holder of the pushers' lock, server/leader.py): the others stand by and take over
        within FOLLOWER_RETRY_S of its death."""
        last_sweep = 0.0
        while True:
            self._wake.clear()  # before looking: a change made while we push wakes us again
            outbox, leading = [], False
            try:
                leading = await asyncio.to_thread(self._pushing.held)
                if leading:
                    outbox = await asyncio.to_thread(self._prepare_pushes)
                else:
                    self._published.clear()  # another pushes; taking over, we push all anew
            except UNAVAILABLE as err:  # the database is down: try again at the next round
                log.warning("cannot prepare settings and commands to push: %s", err)
            for topic, payload, retain, sent, gateway_id, published in outbox:
                await client.publish(topic, payload, qos=1, retain=retain)
                if sent is not None:  # what the broker now has: marked as sent
                    await asyncio.to_thread(sent)
                if published is not None:
                    self._published[gateway_id] = published
                    self._pushed_at[gateway_id] = s.utcnow()
            if time.monotonic() - last_sweep > self.sweep_every_s:
                last_sweep = time.monotonic()
                try:
                    await asyncio.to_thread(self._sweep)
                except Exception as err:
                    log.warning("status sweep failed: %s", err)
            with contextlib.suppress(TimeoutError):
                wait_s = self.sweep_every_s if leading else FOLLOWER_RETRY_S
                await asyncio.wait_for(self._wake.wait(), wait_s)

    def _prepare_pushes(self) -> list[tuple]:
        """Settings whose effective version or seal key differs from what we retained,
        sealed for the wire, pending commands and DR events, as (topic, payload, retain,
        what to call once published, gateway id, (version, seal key)). Each gateway
        and each command is prepared on its own: one that cannot be (a value the wire
        refuses, a key that does not open its credentials) is skipped with an event, and
        every other gateway of every tenant still gets its settings and commands."""
        out = []
        now_s = int(time.time())
        with self.engine.connect() as reading:  # one connection for the round's reads
            gateways = reading.execute(
                select(s.gateways).where(
                    s.gateways.c.tenant_id.is_not(None), s.gateways.c.mqtt_username.is_not(None)
                )
            ).all()
            pending = commands.pending(reading) + commands.owed(reading)
            reading.rollback()
            out += self._prepare_settings(reading, gateways, now_s)
        for row, serial in pending:
            try:
                topic, payload = encode_publish(commands.as_message(row), serial)
            except Exception as err:
                with self.engine.begin() as conn:
                    commands.fail(conn, row.id, f"cannot be sent: {err}")
                continue
            out.append(
                (topic, payload, False, partial(self._mark_sent, row.id), row.gateway_id, None)
            )
        return out + self._prepare_dr()

    def _prepare_dr(self) -> list[tuple]:
        """DR events (and cancels) owed to gateways (the dr room's `due_dispatches`, which
        fixes each home's targets as it hands them out: one transaction)."""
        out = []
        with self.engine.begin() as conn:

            def heard(ids: set[int]) -> dict:  # only gateways that owe an answer: not the fleet
                g = s.gateways.c
                return dict(conn.execute(select(g.id, g.last_seen_at).where(g.id.in_(ids))).all())

            for due in dr_dispatch.due_dispatches(conn, s.utcnow(), heard):
                try:
                    topic, payload = encode_publish(dr_link.as_message(due), due.serial)
                except WireError as err:  # the event is the operator's to correct
                    log.warning("DR event %s cannot go to %s: %s", due.event_id, due.serial, err)
                    continue
                sent = partial(self._mark_dr_sent, due.participation_id)
                out.append((topic, payload, False, sent, due.gateway_id, None))
        return out

    def _mark_dr_sent(self, participation_id: int) -> None:
        with self.engine.begin() as conn:
            dr_dispatch.mark_sent(conn, [participation_id])

    def _prepare_settings(self, reading: Any, gateways: list, now_s: int) -> list[tuple]:
        """Each gateway's settings to retain, where they changed; one that fails is
        skipped (its reads rolled back, so the connection serves the next one)."""
        out = []
        versions = config.effective_versions(reading)  # one query, not one per gateway
        reading.rollback()
        for gateway in gateways:
            # A restarted agent enrolls with a new key: the same version, sealed again.
            known = (versions.get(gateway.id, 0), gateway.seal_public_key)
            if self._published.get(gateway.id) == known and not self._missed(gateway, known[0]):
                continue
            try:
                settings = config.effective_settings(reading, gateway, self.box, now_s=now_s)
                reading.rollback()
                if settings is None:
                    continue
                published = (settings.version, gateway.seal_public_key)
                with self.engine.begin() as conn:
                    settings = config.for_wire(conn, gateway, settings)
                topic, payload = encode_publish(settings, gateway.serial)
            except UNAVAILABLE:
                raise
            except Exception as err:
                reading.rollback()
                self._cannot_push(gateway, "settings", err)
                continue
            out.append((topic, payload, True, None, gateway.id, published))
        return out

    def _missed(self, gateway: Any, version: int) -> bool:
        """Heard from well after our push, yet still on other settings: the retained copy
        did not reach it (a cluster's node keeps retained messages to itself, and the
        gateway connected to another). Pushed again, once per REPUSH_S of its activity."""
        pushed = self._pushed_at.get(gateway.id)
        return (
            pushed is not None
            and gateway.last_seen_at is not None
            and gateway.settings_version_applied != version
            and (gateway.last_seen_at - pushed).total_seconds() > REPUSH_S
        )

    def _cannot_push(self, gateway: Any, what: str, err: Exception) -> None:
        """Recorded once per gateway and cause, not at every round of the push loop."""
        cause = f"{type(err).__name__}: {err}"[:300]
        if self._unpushable.get(gateway.id) == cause:
            return
        self._unpushable[gateway.id] = cause
        log.warning("gateway %s: its %s cannot be pushed: %s", gateway.serial, what, cause)
        with self.engine.begin() as conn:
            record_event(
                conn,
                tenant_id=gateway.tenant_id,
                gateway_id=gateway.id,
                code="settings_not_pushed",
                severity="error",
                detail={"error": cause, "action": "correct this gateway's settings"},
            )

    def _mark_sent(self, command_id: int) -> None:
        with self.engine.begin() as conn:
            commands.mark_sent(conn, command_id)

    def _sweep(self) -> None:
        self._hold_node_name()
        with self.engine.begin() as conn:
            status.sweep_silent(conn, self.heartbeat_s)
            commands.expire(conn)
