"""Demand response in the home, the thin I/O part: discover the controllable devices on
the LAN, read them, apply the plan of `dr.py` with ECHONET Lite SetC, read every Set back
with a Get, and restore what was changed when the policy's bounds or the window end.

A `stop` event ends the action early: every restore still owed is made at once (a cancel
of the event). A `journal` hears of every Set as it is made, so that what is owed can be
kept on disk and undone after a restart (`dr_runner.py`).

Discovery is the client's own (`EchonetClient.discover`: a multicast Get of 0xD6, or the
hosts given); every object of a class `dr.py` plans for is a candidate. A device that does
not answer is skipped with the reason, never fatal: the others still act.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kenshin.echonet.errors import EchonetError
from kenshin.echonet.udp import EchonetClient

from . import dr
from .poller import Clock

log = logging.getLogger(__name__)


class DrActor:
    def __init__(
        self,
        client: EchonetClient,
        clock: Clock,
        policy: dr.DrPolicy,
        *,
        hosts: list[str] | None = None,
        port: int | None = None,
        discover_timeout_s: float = 2.0,
    ):
        self.client, self.clock, self.policy = client, clock, policy
        self.hosts, self.port, self.discover_timeout_s = hosts, port, discover_timeout_s

    async def discover(self) -> list[dr.Device]:
        nodes = await self.client.discover(
            timeout_s=self.discover_timeout_s, hosts=self.hosts, port=self.port
        )
        return [
            dr.Device(node.host, node.port, eoj)
            for node in nodes
            for eoj in node.instances
            if eoj.class_code in dr.READ_EPCS
        ]

    async def read(self, device: dr.Device) -> dr.Reading:
        answer = await self.client.get(
            device.host, device.eoj, dr.READ_EPCS[device.class_code], port=device.port
        )
        values = {k: v for k, v in answer.values.items() if not isinstance(v, Exception)}
        return dr.Reading(device, values)

    async def _get(self, device: dr.Device, epc: int) -> Any:
        try:
            answer = await self.client.get(device.host, device.eoj, [epc], port=device.port)
        except EchonetError:
            return None
        value = answer.values.get(epc)
        return None if isinstance(value, Exception) else value

    async def _set(self, device: dr.Device, epc: int, value: Any, *, restore: bool):
        at = self.clock.now()
        try:
            answer = await self.client.set_c(
                device.host, device.eoj, {epc: value}, port=device.port
            )
            accepted = answer.ok and epc not in answer.refused
        except EchonetError as err:
            log.warning("demand response: %s %s did not take 0x%02X: %s", device.host,
                        device.eoj, epc, err)  # fmt: skip
            accepted = False
        return dr.SetResult(device, epc, value, accepted, await self._get(device, epc), at, restore)

    async def wait_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        """Sleep until `moment` or until `stop` is set; False when stopped."""
        if stop.is_set():
            return False
        sleeper = asyncio.ensure_future(self.clock.sleep_until(moment))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()
        return not stop.is_set()

    async def restore(self, device: dr.Device, epc: int, value: Any) -> dr.SetResult:
        """One restore outside a run: what a run before a restart left owed."""
        return await self._set(device, epc, value, restore=True)

    async def power_w(self, device: dr.Device) -> Any:
        return await self._get(device, dr.POWER_EPC[device.class_code])

    async def run(
        self,
        action: dr.DrAction,
        *,
        stop: asyncio.Event | None = None,
        journal: Callable[[dr.Change, dr.SetResult], None] | None = None,
    ) -> dr.DrReport:
        """Wait for the window, act, wait for each restore, restore; the whole report.
        Stopped before the start: nothing done, an empty report."""
        stop = stop or asyncio.Event()
        report = dr.DrReport(action)
        if not await self.wait_until(action.start, stop):
            return report
        readings = []
        for device in await self.discover():
            try:
                readings.append(await self.read(device))
            except EchonetError as err:
                report.skipped[device] = f"does not answer: {err}"
        the_plan = dr.plan(action, readings, self.policy, self.clock.now())
        report.skipped.update(the_plan.skipped)
        before = {r.device: r.power_w for r in readings}
        taken: set[tuple[dr.Device, int]] = set()
        for change in the_plan.changes:
            result = await self._set(change.device, change.epc, change.value, restore=False)
            report.for_device(change.device).sets.append(result)
            if result.accepted:
                taken.add((change.device, change.epc))
            if journal is not None:
                journal(change, result)
        for device, entry in report.devices.items():
            entry.power_before_w = before.get(device)
            entry.power_after_w = await self._get(device, dr.POWER_EPC[device.class_code])
        for moment, changes in the_plan.restores():
            owed = [c for c in changes if (c.device, c.epc) in taken]
            await self._restore(report, moment, owed, stop, journal)
        return report

    async def _restore(
        self,
        report: dr.DrReport,
        moment: datetime,
        changes: list,
        stop: asyncio.Event,
        journal: Callable[[dr.Change, dr.SetResult], None] | None,
    ) -> None:
        if not changes:
            return
        await self.wait_until(moment, stop)  # stopped: at once
        for change in changes:
            result = await self._set(change.device, change.epc, change.restore, restore=True)
            report.for_device(change.device).sets.append(result)
            if journal is not None:
                journal(change, result)
        for device in {c.device for c in changes}:
            power = await self._get(device, dr.POWER_EPC[device.class_code])
            report.for_device(device).power_restored_w = power
