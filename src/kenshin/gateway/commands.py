"""What each command from the server does on the gateway. A command that fails in any way
answers a failed result; the agent goes on (`GatewayAgent._run_command`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kenshin.echonet.jsonable import to_jsonable
from kenshin.jst import SLOT_S
from kenshin.meter import SmartMeterSession
from kenshin.wire import Command

from .poller import MeterPoller


class RestartRequested(Exception):
    """A `restart` command: the agent starts over (enrollment included)."""


@dataclass
class MeterRuntime:
    """What the current settings built: the session, its poller, the link to close."""

    session: SmartMeterSession
    poller: MeterPoller
    task: asyncio.Task
    close: Any  # async callable
    link: Any = None
    key: tuple = ()


async def execute(
    command: Command,
    meter: MeterRuntime | None,
    *,
    settings_version: int | None,
    send_soon: Callable[[], None],
    update: Callable[[Any], Awaitable[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The command's result; raises for a failure (the caller answers it as failed).
    `send_soon` wakes the uplink (a backfill's readings should not wait for the slot);
    `update` answers `update` (`updater.AgentUpdates.command`), None when the agent runs
    without a supervisor and install root."""
    args, name = dict(command.args), command.name
    if name == "restart":
        raise RestartRequested()
    if name == "apply_settings":
        return {"settings_version": settings_version}
    if name == "update":
        if update is None:
            raise ValueError("this agent runs without an install root: no updates")
        return await update(args)
    if meter is None:
        raise ValueError("no meter configured yet")
    poller, session = meter.poller, meter.session
    if name == "read_property":
        epc = int(args["epc"], 16) if isinstance(args["epc"], str) else int(args["epc"])
        value = await session.read_property(epc)
        return {"epc": f"0x{epc:02X}", "value": to_jsonable(value)}
    if name == "realtime":
        poller.realtime(float(args.get("interval_s", 5)), float(args.get("duration_s", 300)))
        return {"until_s": int(time.time() + float(args.get("duration_s", 300)))}
    if name == "backfill":
        added = await poller.backfill(
            int(args["from_s"]) // SLOT_S * SLOT_S, int(args["to_s"]) // SLOT_S * SLOT_S
        )
        send_soon()
        return {"slots": added}
    if name == "rejoin":
        link = meter.link
        if hasattr(link, "session"):  # Wi-SUN: drop the PANA session, join afresh
            await link.session.close()
        await session.connect()
        return {"rejoined": True}
    raise ValueError(f"unknown command {name!r}")
