"""Demand response in the home, the thin I/O part: discover the controllable devices on
the LAN, read them, apply the plan of `dr.py` with ECHONET Lite SetC, read every Set back
with a Get, and restore what was changed when the policy's bounds or the window end.

Discovery is the client's own (`EchonetClient.discover`: a multicast Get of 0xD6, or the
hosts given); every object of a class `dr.py` plans for is a candidate. A device that does
not answer is skipped with the reason, never fatal: the others still act.
"""

from __future__ import annotations

import logging
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

    async def run(self, action: dr.DrAction) -> dr.DrReport:
        """Wait for the window, act, wait for each restore, restore; the whole report."""
        await self.clock.sleep_until(action.start)
        report = dr.DrReport(action)
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
        for device, entry in report.devices.items():
            entry.power_before_w = before.get(device)
            entry.power_after_w = await self._get(device, dr.POWER_EPC[device.class_code])
        for moment, changes in the_plan.restores():
            await self._restore(report, moment, [c for c in changes if (c.device, c.epc) in taken])
        return report

    async def _restore(self, report: dr.DrReport, moment: datetime, changes: list) -> None:
        if not changes:
            return
        await self.clock.sleep_until(moment)
        for change in changes:
            result = await self._set(change.device, change.epc, change.restore, restore=True)
            report.for_device(change.device).sets.append(result)
        for device in {c.device for c in changes}:
            power = await self._get(device, dr.POWER_EPC[device.class_code])
            report.for_device(device).power_restored_w = power
