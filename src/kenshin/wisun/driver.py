"""The dongle's command layer: one SKSTACK IP command at a time over a serial port.

`SkstackDriver` writes a command, lets the parser (`lines`) turn the byte stream into
items, and sorts them: the command's own answer (data lines, then OK / FAIL) completes
the command; events and PAN descriptors go to whoever listens (a scan, a join, the
session's supervisor); received UDP goes to `on_udp`. Every command has a timeout: a
dongle that stops answering raises `CommandTimeout`, which the session turns into a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from . import commands as cmd
from .errors import CommandFailed, SkstackError
from .lines import (
    Dialect,
    Echo,
    Event,
    Fail,
    Garbled,
    Info,
    LinkLocal,
    Ok,
    PanDescriptor,
    ReceivedUdp,
    SkstackParser,
)
from .serial_port import DongleUnavailable, SerialPort

log = logging.getLogger(__name__)

# Event numbers (docs/protocol.md §3)
EVENT_BEACON = 0x20
EVENT_UDP_SENT = 0x21
EVENT_SCAN_DONE = 0x22
EVENT_PANA_FAILED = 0x24
EVENT_PANA_OK = 0x25
EVENT_SESSION_ENDED_BY_METER = 0x26
EVENT_TERMINATED = 0x27
EVENT_NO_SESSION = 0x28
EVENT_SESSION_EXPIRED = 0x29
EVENT_TX_LIMIT = 0x32
EVENT_TX_LIMIT_RELEASED = 0x33


class CommandTimeout(SkstackError, TimeoutError):
    """The dongle did not finish a command in time: it is hung or the line is garbled."""


@dataclass
class Answer:
    """What a command got back before its OK: data lines in order."""

    lines: list[object] = field(default_factory=list)
    ok_detail: str | None = None


class SkstackDriver:
    def __init__(
        self,
        path: str,
        *,
        baudrate: int = 115200,
        dialect: Dialect = Dialect.BP35A1,
        command_timeout_s: float = 5.0,
        on_udp: Callable[[ReceivedUdp], None] | None = None,
        on_lost: Callable[[Exception | None], None] | None = None,
    ):
        self.path, self.baudrate = path, baudrate
        self.dialect = dialect
        self.command_timeout_s = command_timeout_s
        self.on_udp = on_udp or (lambda _: None)
        self.on_lost = on_lost or (lambda _: None)
        self._parser = SkstackParser(dialect)
        self._port: SerialPort | None = None
        self._lock = asyncio.Lock()  # SKSTACK takes one command at a time
        self._answer: Answer | None = None
        self._done: asyncio.Future[Answer] | None = None
        self._completes_on: type | None = None  # SKLL64 ends with its data line, not OK
        self._command: bytes | None = None  # in flight, for error messages (redacted there)
        self._listeners: set[asyncio.Queue[Event | PanDescriptor]] = set()
        self.garbled_lines = 0

    # -- the port ------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._port is not None and self._port.is_open

    def open(self) -> None:
        self.close()
        self._parser = SkstackParser(self.dialect)
        self._port = SerialPort(self.path, self.baudrate, self._on_bytes, self._port_lost)
        self._port.open()

    def close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None
        self._fail_command(DongleUnavailable(f"{self.path} was closed"))

    def set_dialect(self, dialect: Dialect) -> None:
        """After probing: the field layouts of events and ERXUDP depend on it."""
        if dialect != self.dialect:
            self.dialect = dialect
            self._parser = SkstackParser(dialect)

    def _port_lost(self, err: Exception | None) -> None:
        log.warning("dongle %s went away: %s", self.path, err or "end of file")
        self._fail_command(DongleUnavailable(f"{self.path} went away: {err or 'end of file'}"))
        self.on_lost(err)

    def _fail_command(self, err: Exception) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(err)

    # -- incoming ------------------------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        for item in self._parser.feed(data):
            self._route(item)

    def _route(self, item: object) -> None:
        if isinstance(item, ReceivedUdp):
            self.on_udp(item)
        elif isinstance(item, Event | PanDescriptor):
            for queue in self._listeners:
                queue.put_nowait(item)
        elif isinstance(item, Garbled):
            self.garbled_lines += 1
            log.warning("garbled line from the dongle: %s", item.reason)
        elif isinstance(item, Echo):
            pass  # our own command coming back (register SFE)
        elif self._answer is None or self._done is None or self._done.done():
            log.debug("unexpected line from the dongle: %r", item)
        elif isinstance(item, Ok):
            self._answer.ok_detail = item.detail
            self._done.set_result(self._answer)
        elif isinstance(item, Fail):
            self._done.set_exception(CommandFailed(item.code, self._command))
        else:
            self._answer.lines.append(item)
            if self._completes_on is not None and isinstance(item, self._completes_on):
                self._done.set_result(self._answer)

    @contextlib.contextmanager
    def listen(self) -> Iterator[asyncio.Queue[Event | PanDescriptor]]:
        """Receive every event and PAN descriptor while the block runs."""
        queue: asyncio.Queue[Event | PanDescriptor] = asyncio.Queue()
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    # -- commands ------------------------------------------------------------------------

    async def command(
        self,
        line: bytes,
        *,
        timeout_s: float | None = None,
        completes_on: type | None = None,
    ) -> Answer:
        """Send one command and wait for its OK (or `completes_on` data line)."""
        async with self._lock:
            if self._port is None:
                raise DongleUnavailable(f"{self.path} is not open")
            loop = asyncio.get_running_loop()
            self._answer, self._done = Answer(), loop.create_future()
            self._completes_on, self._command = completes_on, line
            shown = cmd.redact(line)
            log.debug("-> %s", shown)
            try:
                self._port.write(line)
                return await asyncio.wait_for(
                    asyncio.shield(self._done), timeout_s or self.command_timeout_s
                )
            except TimeoutError:
                raise CommandTimeout(
                    f"the dongle did not answer {shown.split()[0]} within "
                    f"{timeout_s or self.command_timeout_s:g} s"
                ) from None
            finally:
                self._answer = self._done = self._completes_on = self._command = None

    async def reset(self) -> None:
        await self.command(cmd.reset())

    async def version(self) -> str:
        answer = await self.command(cmd.version())
        return next((getattr(x, "text", "") for x in answer.lines), "")

    async def info(self) -> Info:
        answer = await self.command(cmd.info())
        for line in answer.lines:
            if isinstance(line, Info):
                return line
        raise SkstackError("SKINFO gave no EINFO line")

    async def set_register(self, register: str, value: str) -> None:
        await self.command(cmd.set_register(register, value))

    async def set_credentials(self, route_b_id: str, password: str) -> None:
        await self.command(cmd.set_route_b_id(route_b_id))
        await self.command(cmd.set_password(password))

    async def read_option(self) -> str | None:
        """ROPT: '01' when ERXUDP data comes as hex; None on firmware without ROPT."""
        try:
            answer = await self.command(cmd.read_option())
        except CommandFailed as err:
            if err.code == 4:
                return None
            raise
        return answer.ok_detail

    async def scan(self, duration: int, *, timeout_s: float | None = None) -> list[PanDescriptor]:
        """Active scan of every channel; the PANs that answered."""
        # Each channel listens 9.6 ms × (2**duration + 1); 28 channels, plus slack.
        expected = 28 * 0.0096 * (2**duration + 1)
        found: list[PanDescriptor] = []
        with self.listen() as queue:
            await self.command(cmd.scan(duration, self.dialect))
            async with asyncio.timeout(timeout_s or expected * 1.5 + 5):
                while True:
                    item = await queue.get()
                    if isinstance(item, PanDescriptor):
                        found.append(item)
                    elif item.code == EVENT_SCAN_DONE:
                        return found

    async def link_local(self, mac: str) -> str:
        answer = await self.command(cmd.link_local(mac), completes_on=LinkLocal)
        return answer.lines[-1].ip6

    async def join(self, address: str, *, timeout_s: float = 40.0) -> bool:
        """PANA authentication with the meter: True on EVENT 25, False on EVENT 24."""
        with self.listen() as queue:
            await self.command(cmd.join(address))
            async with asyncio.timeout(timeout_s):
                while True:
                    item = await queue.get()
                    if isinstance(item, Event) and item.code in (EVENT_PANA_OK, EVENT_PANA_FAILED):
                        return item.code == EVENT_PANA_OK

    async def send_udp(self, address: str, port: int, data: bytes) -> int:
        """SKSENDTO; the EVENT 21 result (0 sent, 1 failed, 2 neighbour solicitation)."""
        with self.listen() as queue:
            await self.command(cmd.send_to(1, address, port, data, self.dialect))
            while not queue.empty():
                item = queue.get_nowait()
                if isinstance(item, Event) and item.code == EVENT_UDP_SENT:
                    return item.param or 0
        return 0  # the EVENT 21 may follow the OK on some firmware: treat as sent

    async def terminate(self) -> None:
        with contextlib.suppress(CommandFailed, CommandTimeout):
            await self.command(cmd.terminate())
