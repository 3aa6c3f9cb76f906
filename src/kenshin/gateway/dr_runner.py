"""Demand response from the cloud, the agent's side: a `DrEvent` in, a `DrAck` out at once,
the `DrActor` at the window's start, a `DrReport` after its end (`dr.py` plans,
`dr_actor.py` sets; this module takes the events and keeps what it owes on disk).

- **Settings.** `values["dr"]` is the policy (`dr.parse_policy`; absent: the defaults)
  and `values["dr"]["lan"]`: `{"hosts": [...], "port": 3610, "bind": "0.0.0.0",
  "discover_timeout_s": 2}`, all optional. Without `hosts`, discovery is the multicast
  one; with them, only those addresses are asked (a LAN whose switch drops multicast, the
  tests). A section that does not validate is reported (Event `dr_policy_invalid`) and
  every event is refused until it is fixed.
- **The ack** says how many discovered devices the event's level and the policy may use
  (`dr.usable_classes`); which of them are set depends on their state at the start.
  `targets` ask one reduction per half hour; the planner takes one figure for the window,
  so the largest is asked for all of it (a plan per slot is a later slice). `price` and
  `opt_out_deadline_s` are the server's and the household's business: not used here.
- **Copies.** An event and its cancel are told apart by `cancelled`. A copy of one already
  answered gets the same ack again and nothing more; one whose ack is still being worked
  out is dropped (the first copy's ack answers both), as `CommandMemory` does.
- **Cancel.** The actor stops: every restore owed is made at once; ack `cancelled`. The
  event's report follows as for one that ended. A cancel of an event not under way is
  acked `cancelled` with a reason.
- **Restart.** `dr-state.json` beside the queue holds each accepted event until its
  report is acknowledged by the broker, with every Set made and every restore owed. At
  start: an event not yet acted on is acked again and waits for its window as before; one
  under way has what it changed restored at once and is reported with `ok` false, not
  resumed (nobody knows what the household did with the devices meanwhile, and a device
  held past its policy's bound because the agent died is what must never happen).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kenshin.echonet.classes import decode_property, encode_property
from kenshin.echonet.errors import EchonetError
from kenshin.echonet.frame import EOJ
from kenshin.echonet.udp import EchonetClient
from kenshin.wire import (
    MAX_DR_DEVICES,
    MAX_DR_SETS,
    DrAck,
    DrAckState,
    DrDeviceReport,
    DrEvent,
    DrReport,
    DrSet,
    Event,
    Message,
    decode,
    encode,
)
from kenshin.wire.dr_settings import DrLan

from . import dr
from .dr_actor import DrActor
from .poller import Clock

log = logging.getLogger(__name__)
STATE_FILE = "dr-state.json"
REMEMBERED = 64  # answered events kept, to answer their copies


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _edt(device: dr.Device, epc: int, value: Any) -> bytes | None:
    """A typed value as its EDT; None for no value (or one with no encoding)."""
    if value is None:
        return None
    try:
        edt = encode_property(device.class_code, epc, value)
    except (EchonetError, KeyError, TypeError, ValueError):
        return None
    return edt or None


def wire_set(device: dr.Device, result: dr.SetResult) -> DrSet:
    asked = _edt(device, result.epc, result.asked) or b"\x00"
    read_back = _edt(device, result.epc, result.read_back)
    return DrSet(result.epc, asked, result.accepted, read_back, result.restore)


def wire_report(event_id: int, report: dr.DrReport, *, complete: bool = True) -> DrReport:
    """The report as it travels: `ok` when the run was complete and every Set confirmed."""
    devices = tuple(
        DrDeviceReport(
            int.from_bytes(bytes(device.eoj), "big"),
            tuple(wire_set(device, r) for r in entry.sets)[:MAX_DR_SETS],
            entry.power_before_w,
            entry.power_after_w,
            entry.power_restored_w,
        )
        for device, entry in report.devices.items()
    )[:MAX_DR_DEVICES]
    ok = complete and all(s.confirmed for d in devices for s in d.sets)
    return DrReport(event_id, devices, ok)


def _action(event: DrEvent) -> dr.DrAction:
    start, end = (datetime.fromtimestamp(t, UTC) for t in (event.start_s, event.end_s))
    if event.targets:
        return dr.DrAction(start=start, end=end, reduce_w=max(w for _, w in event.targets))
    return dr.DrAction(start=start, end=end, shed=event.shed)


def _check_lan(lan: Any) -> None:
    """`dr.lan` as `DrRunner._actor` takes it; ValueError saying what is wrong."""
    try:
        DrLan.model_validate(lan)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        where = ".".join(map(str, ("dr.lan", *first["loc"])))
        raise ValueError(f"{where}: {first['msg']}") from None


class DrRunner:
    def __init__(
        self,
        clock: Clock,
        state_dir: Path,
        report: Callable[[Event], None],
        send_soon: Callable[[], None],
    ):
        self.clock, self._report, self._send_soon = clock, report, send_soon
        self._path = state_dir / STATE_FILE
        self.outbox: list[Message] = []
        self._stops: dict[int, asyncio.Event] = {}
        self._tasks: set[asyncio.Task] = set()
        self._clients: dict[str, EchonetClient] = {}
        self._state = self._load()
        self._resumed = False

    # -- the agent's calls -----------------------------------------------------------------

    def arrived(self, event: Any, settings: Any) -> None:
        """A DrEvent from the command topic; `settings` the agent's (None before any)."""
        if not isinstance(event, DrEvent):
            return
        key = f"{event.event_id}{'c' if event.cancelled else ''}"
        if key in self._state["answered"]:  # a copy
            if (earlier := self._state["answered"][key]) is not None:
                self._send(decode(bytes.fromhex(earlier)))
            return
        self._state["answered"][key] = None
        values = settings.values if settings is not None else {}
        section = values.get("dr") if isinstance(values.get("dr"), Mapping) else {}
        self._spawn(self._cancel(event) if event.cancelled else self._take(event, dict(section)))

    def resume(self) -> None:
        """Once, at the agent's start: what a run before a restart left."""
        if self._resumed:
            return
        self._resumed = True
        for entry in list(self._state["events"].values()):
            event = decode(bytes.fromhex(entry["event"]))
            if entry["sets"]:
                self._spawn(self._restore_after_restart(event, entry))
            else:
                self._spawn(self._take(event, entry["dr"]))  # acked again, then as before

    async def flush(self, publish: Callable[[Message], Awaitable[None]]) -> None:
        """Send what is owed, each forgotten after the broker's PUBACK."""
        while self.outbox:
            message = self.outbox[0]
            await publish(message)
            del self.outbox[0]
            if isinstance(message, DrReport):
                self._state["events"].pop(str(message.event_id), None)
                self._save()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    # -- one event -------------------------------------------------------------------------

    async def _take(self, event: DrEvent, section: dict) -> None:
        stop = self._stops.setdefault(event.event_id, asyncio.Event())
        ack, actor = await self._accept(event, section)
        self._answer(event, ack)
        if ack.state != DrAckState.ACCEPTED or actor is None:
            self._stops.pop(event.event_id, None)
            self._state["events"].pop(str(event.event_id), None)
            self._save()
            return
        entry = {"event": encode(event).hex(), "dr": section, "sets": [], "owed": {}}
        self._state["events"][str(event.event_id)] = entry
        self._save()
        action = _action(event)
        try:
            report = await actor.run(action, stop=stop, journal=self._journal(entry))
            await actor.wait_until(action.end, stop)  # the report goes after the end
        finally:
            self._stops.pop(event.event_id, None)
        self._send(wire_report(event.event_id, report))

    async def _accept(self, event: DrEvent, section: dict) -> tuple[DrAck, DrActor | None]:
        def refused(reason: str) -> tuple[DrAck, None]:
            return DrAck(event.event_id, DrAckState.REFUSED, 0, reason), None

        policy_section = dict(section)
        lan = policy_section.pop("lan", None) or {}
        try:
            policy = dr.parse_policy(policy_section)
            _check_lan(lan)
        except (dr.PolicyError, ValueError) as err:
            now = _epoch(self.clock.now())
            self._report(Event("dr_policy_invalid", now, {"error": str(err)[:200]}))
            return refused("the dr settings do not validate")
        if event.end_s <= _epoch(self.clock.now()):
            return refused("the window is over")
        try:
            actor = await self._actor(lan, policy)
        except OSError as err:
            log.warning("demand response: no socket on the home LAN: %s", err)
            return refused("the home LAN does not answer")
        classes = dr.usable_classes(_action(event), policy)
        try:
            devices = [d for d in await actor.discover() if d.class_code in classes]
        except (EchonetError, OSError) as err:
            log.warning("demand response: discovery failed: %s", err)
            return refused("the home LAN does not answer")
        if not devices:
            return DrAck(event.event_id, DrAckState.NO_DEVICES, 0), None
        count = min(len(devices), MAX_DR_DEVICES)
        return DrAck(event.event_id, DrAckState.ACCEPTED, count), actor

    async def _actor(self, lan: Mapping[str, Any], policy: dr.DrPolicy) -> DrActor:
        hosts, port, bind = lan.get("hosts"), lan.get("port"), lan.get("bind", "0.0.0.0")
        if bind not in self._clients:  # one socket for every event, on a port of its own
            client = EchonetClient(host=bind, port=0, join_multicast=False)
            await client.open()
            self._clients[bind] = client
        timeout_s = lan.get("discover_timeout_s", 2.0)
        return DrActor(self._clients[bind], self.clock, policy, hosts=hosts, port=port,
                       discover_timeout_s=timeout_s)  # fmt: skip

    async def _cancel(self, event: DrEvent) -> None:
        stop = self._stops.get(event.event_id)
        if stop is not None:
            stop.set()  # the actor restores what it owes at once; its report follows
        reason = None if stop is not None else "no such event under way"
        self._answer(event, DrAck(event.event_id, DrAckState.CANCELLED, 0, reason))

    def _journal(self, entry: dict) -> Callable[[dr.Change, dr.SetResult], None]:
        """Keeps every Set and every restore owed on disk, as it happens."""

        def note(change: dr.Change, result: dr.SetResult) -> None:
            device = change.device
            where = f"{device.host}|{device.port}|{bytes(device.eoj).hex()}|{change.epc}"
            done = wire_set(device, result)
            read_back = None if done.read_back is None else done.read_back.hex()
            entry["sets"].append(
                [where, done.epc, done.asked.hex(), done.accepted, read_back, done.restore]
            )
            if result.restore:
                entry["owed"].pop(where, None)
            elif result.accepted:
                entry["owed"][where] = (_edt(device, change.epc, change.restore) or b"").hex()
            self._save()

        return note

    async def _restore_after_restart(self, event: DrEvent, entry: dict) -> None:
        """Undo at once what the event changed before the agent stopped; report it."""
        lan = dict(entry["dr"].get("lan") or {})
        actor = await self._actor(lan, dr.DrPolicy())
        sets: dict[str, list[DrSet]] = {}
        for where, epc, asked, accepted, read_back, restore in entry["sets"]:
            back = None if read_back is None else bytes.fromhex(read_back)
            done = DrSet(epc, bytes.fromhex(asked), accepted, back, restore)
            sets.setdefault(where.rsplit("|", 1)[0], []).append(done)
        powers: dict[str, Any] = {}
        for where, edt in entry["owed"].items():
            host, port, eoj, epc = where.split("|")
            device, code = dr.Device(host, int(port), EOJ.parse(bytes.fromhex(eoj))), int(epc)
            value = decode_property(device.class_code, code, bytes.fromhex(edt))
            result = await actor.restore(device, code, value)
            sets.setdefault(where.rsplit("|", 1)[0], []).append(wire_set(device, result))
            powers[where.rsplit("|", 1)[0]] = await actor.power_w(device)
        devices = tuple(
            DrDeviceReport(
                int(key.split("|")[2], 16), tuple(done)[:MAX_DR_SETS], None, None, powers.get(key)
            )
            for key, done in sets.items()
        )[:MAX_DR_DEVICES]
        entry["owed"] = {}
        self._save()
        self._send(DrReport(event.event_id, devices, False))

    # -- answers and the state file --------------------------------------------------------

    def _answer(self, event: DrEvent, ack: DrAck) -> None:
        answered = self._state["answered"]
        answered[f"{event.event_id}{'c' if event.cancelled else ''}"] = encode(ack).hex()
        for key in list(answered)[:-REMEMBERED]:
            del answered[key]
        self._save()
        self._send(ack)

    def _send(self, message: Message) -> None:
        self.outbox.append(message)
        self._send_soon()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (err := task.exception()) is not None:
            log.error("demand response failed", exc_info=err)
            detail = {"error": f"{type(err).__name__}: {err}"[:200]}
            self._report(Event("dr_failed", _epoch(self.clock.now()), detail))

    def _load(self) -> dict:
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(self._path.read_text())
            if isinstance(state, dict) and {"events", "answered"} <= state.keys():
                return state
        return {"events": {}, "answered": {}}

    def _save(self) -> None:
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._state))
        os.replace(temporary, self._path)
