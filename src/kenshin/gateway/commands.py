"""What each command from the server does on the gateway. A command that fails in any way
answers a failed result; the agent goes on (`GatewayAgent._run_command`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kenshin.echonet.jsonable import to_jsonable
from kenshin.jst import SLOT_S
from kenshin.meter import MeterError, SmartMeterSession
from kenshin.wire import Command, CommandResult

from .poller import MeterPoller

log = logging.getLogger("kenshin.gateway.agent")  # its lines keep the name they had


class RestartRequested(Exception):
    """A `restart` command: the agent starts over (enrollment included)."""


class CommandMemory:
    """The commands lately received, by id. One may come twice: QoS 1 delivers at least
    once, and the server sends a command again to a gateway it hears from without the
    result (after a clean session, or a broker that lost its queue). A second copy of a
    command under way is dropped; of one done, answered with the same result. Sans-I/O."""

    def __init__(self, size: int = 64):
        self._size = size
        self._seen: OrderedDict[int, CommandResult | None] = OrderedDict()

    def arrived(self, command_id: int) -> tuple[bool, CommandResult | None]:
        """(first time?, the result of an earlier copy, if done)."""
        if command_id in self._seen:
            return False, self._seen[command_id]
        self._seen[command_id] = None
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True, None

    def done(self, result: CommandResult) -> None:
        if result.id in self._seen:
            self._seen[result.id] = result


@dataclass
class MeterRuntime:
    """What the current settings built: the session, its poller, the link to close."""

    session: SmartMeterSession
    poller: MeterPoller
    task: asyncio.Task
    close: Any  # async callable
    link: Any = None
    key: tuple = ()


def describe(err: BaseException) -> str:
    """The error itself, not the task group it came out of (the first, if several)."""
    while isinstance(err, BaseExceptionGroup):
        err = err.exceptions[0]
    return f"{type(err).__name__}: {err}"


async def result_of(command: Command, meter: MeterRuntime | None, **context: Any) -> CommandResult:
    """The answer to publish for `command` (`execute` takes `context`): a failure of any
    kind is a failed result; only `RestartRequested` passes through."""
    if command.expires_s < time.time():
        return CommandResult(command.id, False, {}, "expired before it arrived")
    try:
        return CommandResult(command.id, True, await execute(command, meter, **context), None)
    except RestartRequested:
        raise
    except Exception as err:  # whatever it was: the server hears, the agent goes on
        if not isinstance(err, MeterError | KeyError | ValueError | TypeError):
            log.exception("command %s (%s) failed", command.id, command.name)
        return CommandResult(command.id, False, {}, describe(err)[:500])


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
