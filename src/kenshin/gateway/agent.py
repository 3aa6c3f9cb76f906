"""The gateway agent: identity file in, readings out, nothing typed on the device.

1. Enroll over HTTPS with the identity's key (`enroll.py`); wait, politely, while the
   gateway is unclaimed.
2. Connect to the broker with the per-device credentials issued at enrollment, kept in
   memory and reused on every reconnect (enrollment issues a new password: a fleet
   re-enrolling at each broker restart would storm the server); enroll again only when
   the broker refuses them, on a restart, or once when the broker stays unreachable
   through `reenroll_after_failures` attempts (it may have moved). Subscribe to its own
   command and settings topics; a last will tells the cloud if it vanishes.
3. Take the retained settings; they live in memory only. Their B-route credentials come
   sealed to the key this process made at enrollment (`kenshin.wire.sealing`) and are
   opened here, in memory; settings sealed to an earlier key are passed over (the
   server seals them again to the new one), and ones that do not open are reported
   (Event `settings_unreadable`, a Status error count), never applied. Build the meter
   link they name (UDP or Wi-SUN), start the poller, apply later changes without a
   restart and report the applied version in every heartbeat.
4. Send the durable queue's readings as compact batches, QoS 1, right after each JST
   half hour (so the retailer has each 30-minute value within minutes) and whenever a
   person watches in realtime; rows leave the queue only after the broker's PUBACK.
5. Answer commands: read a property, realtime, backfill, re-join, restart, update (run by
   the supervisor: `updater.py`). A failed command answers a failed result, nothing more.

Failed tasks (poller, uplink, downlink) are counted (Status errors), reported (a
`task_failed` Event) and started again after a jittered backoff (`backoff.Backoff`).

Beside it: `status.py` (which changes are news, and how often a Status may go),
`meter_setup.py` (from the settings' meter section to a running link), `commands.py` (what
each command does), `dr_runner.py` (demand-response events: ack, act, report).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from kenshin import __version__
from kenshin.jst import SLOT_S
from kenshin.meter import SmartMeterSession
from kenshin.wire import (
    Command,
    CommandResult,
    Event,
    LinkState,
    MeterScale,
    Settings,
    Status,
    WireError,
    decode_publish,
    encode_publish,
)
from kenshin.wire.sealing import NotSealedToThisKey, SealError
from kenshin.wire.topics import device_subscriptions

from .backoff import Backoff, raise_if_cancelled
from .batches import build_batches, more_behind, take
from .commands import CommandMemory, MeterRuntime, RestartRequested, describe, result_of
from .dr_runner import DrRunner
from .enroll import Enrollment, enroll_until_claimed
from .identity import Identity
from .meter_setup import apply_policy, open_link, open_meter_section
from .poller import Clock, MeterPoller, PollPolicy, SystemClock
from .queue import DurableQueue
from .recipes import RecipeRunner
from .status import (
    STALL_FAILURES,
    STATUS_CHECK_S,
    STATUS_MAX_S,
    STATUS_REFILL_S,
    StatusGate,
    status_changed,
)
from .updater import AgentUpdates, UpdateSetup

log = logging.getLogger(__name__)
MAX_PENDING_EVENTS = 16


# What ends a connection (and is handled by reconnecting), not a bug of ours.
SETTINGS_ASK_S = 30.0  # a status this often while no settings have arrived
LINK_ERRORS = (aiomqtt.MqttError, OSError)
# CONNACK "bad user name or password" / "not authorized", as MQTT 3.1.1 codes and as the
# MQTT 5 reason codes paho reports them with.
CREDENTIAL_REFUSED = {4, 5, 134, 135}


def _credential_refused(err: BaseException) -> bool:
    rc = getattr(err, "rc", None)
    return isinstance(err, MqttConnectError) and getattr(rc, "value", rc) in CREDENTIAL_REFUSED


@dataclass
class AgentOptions:
    queue_path: Path
    http_timeout_s: float = 20.0
    reconnect_backoff_s: tuple[float, ...] = (1, 2, 5, 10, 30, 60)
    restart_backoff_s: tuple[float, ...] = (1, 2, 5, 10, 30, 60)  # a failed task's
    # Failed connects in a row after which the agent asks the server again where its broker
    # is (it may have moved); once per outage. A broker restart is over long before.
    reenroll_after_failures: int = 6
    # Refusals of the credential in a row (a backoff apart) that mean it was revoked or
    # rotated. One may be the broker's auth backend failing under load: RabbitMQ answers
    # "not authorized" when its HTTP call to the server times out, and a fleet that
    # enrolled again at each would storm the server exactly when it is busiest.
    refusals_before_reenroll: int = 2
    settings_wait_s: float = 30.0
    updates: UpdateSetup | None = None  # run by the supervisor: updates possible (updater.py)


@dataclass
class AgentState:
    started: float = field(default_factory=time.monotonic)
    settings: Settings | None = None
    errors: dict[str, int] = field(default_factory=dict)
    connections: int = 0  # times the uplink came up (connected and subscribed)

    def count(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class GatewayAgent:
    def __init__(self, identity: Identity, options: AgentOptions, *, clock: Clock | None = None):
        self.identity = identity
        self.options = options
        self.clock = clock or SystemClock()
        self.queue = DurableQueue(options.queue_path)
        self.state = AgentState()
        self.meter: MeterRuntime | None = None
        self.enrollment: Enrollment | None = None
        self._send_now = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._status_sent_at, self._status_sent = 0.0, None
        self._published_at = time.monotonic()  # any message: the server's sign of life
        self._status_gate = StatusGate()
        self._settings_arrived = asyncio.Event()
        self._events: list[Event] = []  # to send with the next flush (the uplink may be down)
        self._reconnect = Backoff(options.reconnect_backoff_s)
        self._node_attempt = 0  # which of the broker's nodes (a cluster) to try next
        self._refusals = 0  # of our credential, in a row
        self._commands = CommandMemory()  # a command may come twice
        self.updates = (
            AgentUpdates(options.updates, __version__, self._report) if options.updates else None
        )
        self.recipes = RecipeRunner.for_agent(options.updates, __version__, self._report)
        self.dr = DrRunner(self.clock, options.queue_path.parent, self._report, self._send_now.set)

    @property
    def gateway_id(self) -> str:
        return self.enrollment.gateway_id if self.enrollment else self.identity.serial

    # -- the whole life ----------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Until cancelled. The meter keeps being read while the uplink is down (readings
        wait in the queue); only a restart command or new meter settings stop it."""
        keeper = None
        if self.updates is not None:
            keeper = asyncio.create_task(self.updates.keep(self._health))
        self.dr.resume()  # what an event under way when the agent stopped left owed
        try:
            while True:
                try:
                    await self.run_once()
                    return
                except RestartRequested:
                    log.info("restarting as commanded")
                    await self._stop_meter()
                    self.state.settings = None
                    self.enrollment = None  # a restart enrolls afresh
                    self._reconnect.reset()
                except LINK_ERRORS as err:
                    self.state.count("uplink")
                    if _credential_refused(err):
                        self.state.count("credential_refused")
                        self._refusals += 1
                        if self._refusals >= self.options.refusals_before_reenroll:
                            # Revoked or rotated on the server: only a new enrollment helps.
                            log.warning("the broker refused our credential; enrolling again")
                            self.enrollment, self._refusals = None, 0
                    else:
                        self._node_attempt += 1  # a cluster's next node, where there are several
                        if self._reconnect.failures + 1 == self.options.reenroll_after_failures:
                            log.warning("the broker is still unreachable; asking the server again")
                            self.enrollment = None
                    delay = self._reconnect.next_delay()
                    log.warning("uplink lost (%s); again in %.1f s", err, delay)
                    await asyncio.sleep(delay)
        finally:
            if keeper is not None:
                keeper.cancel()
                self.updates.close()
            await self._stop_meter()
            await self.recipes.close()
            self.dr.close()

    def _health(self) -> tuple[bool, float | None]:
        """For the watchdog: came up on the broker in this run; the last good read."""
        stats = self.meter.poller.stats if self.meter is not None else None
        return self.state.connections > 0, stats.last_good_read if stats else None

    async def run_once(self) -> None:
        if self.enrollment is None:
            self.enrollment = await enroll_until_claimed(self.identity, self.options.http_timeout_s)
            if (delay := self.enrollment.mqtt.connect_after_s) > 0:
                log.info("connecting in %.1f s (the server paces first connections)", delay)
                await asyncio.sleep(delay)
        mqtt = self.enrollment.mqtt
        will_topic, will_payload = encode_publish(
            Event("offline", int(time.time()), {"reason": "connection lost"}), self.gateway_id
        )
        host, port = mqtt.node(self._node_attempt)
        async with aiomqtt.Client(
            host,
            port,
            username=mqtt.username,
            password=mqtt.password,
            identifier=self.gateway_id,
            keepalive=mqtt.keepalive_s,
            will=aiomqtt.Will(will_topic, will_payload, qos=1),
            # persistent: commands sent while we were away are kept for us (else sent again)
            clean_session=mqtt.clean_session,
            tls_params=aiomqtt.TLSParameters() if mqtt.tls else None,
        ) as client:
            for topic_filter in device_subscriptions(self.gateway_id):  # QoS 0 when clean:
                await client.subscribe(topic_filter, qos=0 if mqtt.clean_session else 1)
            self._reconnect.reset()
            self._refusals = 0
            self.state.connections += 1
            tasks = [("downlink", self._receive), ("uplink", self._uplink)]
            tasks.append(("heartbeat", self._heartbeat))
            if mqtt.clean_session and self.state.connections > 1:  # commands may be owed us
                tasks.append(("back", self._publish_status))
            try:
                async with asyncio.TaskGroup() as group:
                    self._group = group
                    for name, run in tasks:
                        group.create_task(
                            self._supervised(name, lambda run=run: run(client), LINK_ERRORS)
                        )
            except* RestartRequested:
                raise RestartRequested() from None
            except* LINK_ERRORS as errors:
                raise errors.exceptions[0] from None

    async def _supervised(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> None:
        """Run `run` until it returns or is cancelled; `passthrough` errors end it (the
        connection's, which reconnecting handles). Any other failure is counted in the
        Status errors, reported as an Event, and `run` starts again after a backoff (a
        failure after a long good run starts the backoff over)."""
        backoff = Backoff(self.options.restart_backoff_s)
        while True:
            started = time.monotonic()
            try:
                await run()
                return
            except passthrough:
                raise
            except Exception as err:
                if time.monotonic() - started > max(backoff.steps):
                    backoff.reset()
                delay = backoff.next_delay()
                log.exception("%s failed; starting it again in %.1f s", name, delay)
                self.state.count(f"{name}_failed")
                detail = {"task": name, "error": describe(err)[:200]}
                self._report(Event("task_failed", int(time.time()), detail))
                await asyncio.sleep(delay)

    def _report(self, event: Event) -> None:
        """Goes out with the next flush, with a Status (so also when the uplink is down)."""
        self._events.append(event)
        del self._events[:-MAX_PENDING_EVENTS]  # a long outage: the latest say enough
        self._send_now.set()

    # -- downlink: settings and commands -----------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                _, decoded = decode_publish(str(message.topic), bytes(message.payload))
            except WireError as err:
                self.state.count("bad_downlink")
                log.warning("ignored a bad message on %s: %s", message.topic, err)
                continue
            if isinstance(decoded, Settings):
                await self._apply_settings(decoded, client)
            elif isinstance(decoded, Command):
                self._group.create_task(self._run_command(decoded, client))
            else:  # a DrEvent: acked at once, acted on beside the connection (dr_runner.py)
                self.dr.arrived(decoded, self.state.settings)

    async def _apply_settings(self, settings: Settings, client: aiomqtt.Client) -> None:
        current = self.state.settings
        if current is not None and settings.version <= current.version:
            return
        try:
            meter = open_meter_section(settings, self.enrollment.seal_key, self.gateway_id)
        except NotSealedToThisKey:  # retained before we enrolled again; ours follow
            log.info("settings version %d are sealed to an earlier key", settings.version)
            return
        except SealError as err:
            log.error("settings version %d not applied: %s", settings.version, err)
            self.state.count("settings_unreadable")
            detail = {"version": settings.version, "error": str(err)[:200]}
            self._report(Event("settings_unreadable", int(time.time()), detail))
            return
        log.info("applying settings version %d", settings.version)
        self.state.settings = settings
        values = settings.values
        key = tuple(sorted((k, str(v)) for k, v in meter.items()))
        if self.meter is None or self.meter.key != key:
            await self._stop_meter()
            if meter:
                self.meter = await self._start_meter(meter, key, values.get("poll") or {})
        if self.meter is not None:
            apply_policy(self.meter.poller.policy, values.get("poll") or {})
        self.recipes.want(values.get("recipes") or {})  # fetched and started in the background
        self._settings_arrived.set()
        self._send_now.set()  # the uplink's schedule may have changed: it waited on the old one
        await self._publish_status(client)

    async def _start_meter(self, meter: dict, key: tuple, poll: dict) -> MeterRuntime:
        ref = str(meter.get("ref") or "m")
        link, close = await open_link(meter)
        session = SmartMeterSession(link)
        policy = PollPolicy()
        apply_policy(policy, poll)
        poller = MeterPoller(
            session, self.queue, ref, clock=self.clock, policy=policy, on_urgent=self._send_now.set
        )
        # Outside the connection's task group: the meter is read while the uplink is down.
        task = asyncio.create_task(self._supervised("poller", poller.run))
        return MeterRuntime(session, poller, task, close, link, key)

    async def _stop_meter(self) -> None:
        if self.meter is None:
            return
        self.meter.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.meter.task
        with contextlib.suppress(Exception):
            await self.meter.close()
        self.meter = None

    async def _run_command(self, command: Command, client: aiomqtt.Client) -> None:
        first, earlier = self._commands.arrived(command.id)
        if not first:  # under way: dropped; done: the same answer again
            if earlier is not None:
                await self._publish(client, earlier)
            return
        try:
            result = await result_of(
                command,
                self.meter,
                settings_version=self._settings_version(),
                send_soon=self._send_now.set,
                update=self.updates.command if self.updates else None,
            )
        except RestartRequested:
            await self._publish(client, CommandResult(command.id, True, {"restarting": True}))
            raise
        self._commands.done(result)
        await self._publish(client, result)

    # -- uplink ------------------------------------------------------------------------------

    def _scales(self) -> dict[str, MeterScale]:
        if self.meter is None or self.meter.session.facts is None:
            return {}
        scale = self.meter.session.facts.scale
        return {
            self.meter.poller.meter_ref: MeterScale(
                scale.coefficient, int(scale.unit), scale.digits
            )
        }

    async def _uplink(self, client: aiomqtt.Client) -> None:
        while True:
            # Cleared before the flush: whatever turns urgent during it goes at once after.
            self._send_now.clear()
            await self._flush(client)
            now = time.time()
            batch_delay = float(self._setting("uplink", "batch_delay_s", 60))
            due = (now // SLOT_S + 1) * SLOT_S + batch_delay - now
            # Optionally sooner: how long a reading may wait at most (a live dashboard, the
            # demo); unset, batches go once per half hour, which is what the wire budget wants.
            due = min(due, float(self._setting("uplink", "max_delay_s", due)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._send_now.wait(), due)

    async def _flush(self, client: aiomqtt.Client) -> None:
        """Send what is queued; each batch leaves the queue after its PUBACK. A sample read
        while the batches were on their way waits for the next flush, unless it is urgent:
        on a slow link it would otherwise cost an exchange of its own (~330 B)."""
        await self.dr.flush(lambda message: self._publish(client, message))
        if self._events:
            while self._events:
                event = self._events[0]
                await self._publish(client, event)
                del self._events[0]  # after its PUBACK
                if self.updates is not None:
                    self.updates.sent(event)
            await self._publish_status(client)
        while True:
            pending = take(self.queue)
            batches = build_batches(pending, self.queue.next_seq, self._scales())
            for batch, rows in batches:
                await self._publish(client, batch)  # returns after the broker's PUBACK
                self.queue.ack(rows)
            if not (batches and more_behind(pending)):  # a backlog (after an outage) goes on
                return

    async def _publish(self, client: aiomqtt.Client, message: Any, *, retain=False) -> None:
        topic, payload = encode_publish(message, self.gateway_id)
        await client.publish(topic, payload, qos=1, retain=retain)
        self._published_at = time.monotonic()
        raise_if_cancelled()

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        """A status when something in it changed (link state, an LQI moved by `LQI_STEP`,
        the settings, a new kind of error, the queue doubling), as the `StatusGate`
        allows; else when nothing at all went out for `heartbeat_s` (the server takes a
        gateway silent that long as lost), and at least every `status_max_s`."""
        # Without settings yet: say so now and then. On a cluster, the retained copy may be
        # on a node we are not connected to; the server pushes again to a gateway it hears
        # from without them.
        while not self._settings_arrived.is_set():
            await self._publish_status(client)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settings_arrived.wait(), SETTINGS_ASK_S)
        while True:
            await asyncio.sleep(STATUS_CHECK_S)
            status, now = self.status(), time.monotonic()
            self._status_gate.refill_s = float(
                self._setting("status_refill_s", None, STATUS_REFILL_S)
            )
            max_s = float(self._setting("status_max_s", None, STATUS_MAX_S))
            quiet_s = float(self._setting("heartbeat_s", None, 1800))
            due = now - self._status_sent_at > max_s or now - self._published_at > quiet_s
            if due or (status_changed(status, self._status_sent) and self._status_gate.allow(now)):
                await self._publish_status(client, status)

    async def _publish_status(self, client: aiomqtt.Client, status: Status | None = None) -> None:
        status = status or self.status()
        await self._publish(client, status)
        self._status_sent_at, self._status_sent = time.monotonic(), status

    def status(self) -> Status:
        link, lqi, last_good, errors = LinkState.CLOSED, None, None, dict(self.state.errors)
        if self.meter is not None:
            stats = self.meter.poller.stats
            last_good = int(stats.last_good_read) if stats.last_good_read else None
            errors.update({f"meter_{k}": v for k, v in stats.errors.items()})
            link_status = getattr(self.meter.link, "status", None)
            if link_status is not None:  # Wi-SUN: the session's own view
                link, lqi = LinkState(link_status.state.value), link_status.lqi
            else:
                link = LinkState.JOINED if stats.connected else LinkState.CONNECTING
            if link == LinkState.JOINED and stats.failures_in_row >= STALL_FAILURES:
                link = LinkState.NO_METER  # reached, but the meter does not answer
        depth = self.queue.depth()
        return Status(
            at_s=int(time.time()),
            agent_version=__version__,
            uptime_s=int(time.monotonic() - self.state.started),
            link=link,
            lqi=lqi,
            queue_depth=depth["instant"] + depth["fixed"],
            last_good_read_s=last_good,
            settings_version=self._settings_version(),
            errors=errors,
        )

    # -- settings helpers --------------------------------------------------------------------

    def _settings_version(self) -> int | None:
        return None if self.state.settings is None else self.state.settings.version

    def _setting(self, section: str, key: str | None, default: Any) -> Any:
        values = self.state.settings.values if self.state.settings else {}
        value = values.get(section, default)
        if key is not None:
            value = value.get(key, default) if isinstance(value, dict) else default
        return value if isinstance(value, int | float) and value > 0 else default
