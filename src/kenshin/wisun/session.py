"""A B-route session that looks after itself: open, reset, probe, scan, join, re-join.

`BrouteSession` keeps one PANA session with one meter alive for months, unattended:

- scans with a widening duration (first scans often find nothing) and picks the PAN
  with the best LQI;
- joins with backoff; repeated PANA failures become `AUTH_FAILED` with a message that
  names the likely cause, and it waits `auth_retry_after_s` before trying again instead
  of hammering the meter (a state the gateway reports, not a retry storm);
- follows the session's life from the dongle's events: EVENT 29 (lifetime expired) →
  REAUTHENTICATING until 25, or a full re-join if 24 follows; EVENT 26 → re-join;
- a command timeout (a hung dongle, a garbled answer) → SKRESET and a full re-join; if
  the reset is not answered either, the port is closed and opened again;
- an unplugged dongle → DEVICE_LOST, re-opened with backoff when it comes back.

State and link quality are values in `status`, never only log lines. The B-route ID and
password live in memory only and are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from .driver import (
    EVENT_PANA_FAILED,
    EVENT_PANA_OK,
    EVENT_SESSION_ENDED_BY_METER,
    EVENT_SESSION_EXPIRED,
    EVENT_TX_LIMIT,
    EVENT_TX_LIMIT_RELEASED,
    CommandTimeout,
    SkstackDriver,
)
from .errors import CommandFailed, SkstackError
from .lines import Dialect, Event, PanDescriptor, ReceivedUdp
from .serial_port import DongleUnavailable

log = logging.getLogger(__name__)
ECHONET_PORT = 0x0E1A


class LinkState(StrEnum):
    CLOSED = "closed"
    CONNECTING = "connecting"
    JOINED = "joined"
    REAUTHENTICATING = "reauthenticating"
    NO_METER = "no_meter"  # scans found no PAN
    AUTH_FAILED = "auth_failed"  # PANA refused us repeatedly: check ID/password
    DEVICE_LOST = "device_lost"  # the serial device is gone or will not answer


class LinkDown(SkstackError):
    """The meter cannot be reached now; `state` says why."""

    def __init__(self, message: str, state: LinkState, reason: str | None = None):
        super().__init__(message)
        self.state = state
        self.reason = reason or message  # without the retry promise: for one-shot callers


class AuthenticationFailed(LinkDown):
    pass


class MeterNotFound(LinkDown):
    pass


@dataclass
class BrouteConfig:
    device: str
    route_b_id: str = field(repr=False)
    password: str = field(repr=False)
    dialect: Dialect | None = None  # None: probe (SKINFO's shape tells them apart)
    baudrate: int = 115200
    command_timeout_s: float = 5.0
    scan_durations: tuple[int, ...] = (4, 5, 6, 7)  # widened step by step, capped
    join_attempts: int = 3
    join_timeout_s: float = 40.0
    join_backoff_s: float = 2.0  # doubled after each failed join
    auth_retry_after_s: float = 600.0  # after AUTH_FAILED, wait this long before trying again
    reauth_timeout_s: float = 60.0  # after EVENT 29, how long to wait for EVENT 25
    reopen_backoff_s: tuple[float, ...] = (1, 2, 5, 10, 30, 60)


@dataclass
class LinkStatus:
    """What the gateway reports about its link, as values."""

    state: LinkState = LinkState.CLOSED
    since: float = field(default_factory=time.time)
    dialect: str | None = None
    firmware: str | None = None
    channel: int | None = None
    pan_id: int | None = None
    lqi: int | None = None
    meter_mac: str | None = None
    meter_address: str | None = None
    joins: int = 0
    join_failures: int = 0
    session_expiries: int = 0
    resets: int = 0
    reopens: int = 0
    garbled_lines: int = 0
    transmit_limited: bool = False
    last_error: str | None = None

    @property
    def rssi_dbm(self) -> float | None:
        """The LQI as dBm, by the formula the dongle vendors give (0.275 × LQI − 104.27)."""
        return None if self.lqi is None else round(0.275 * self.lqi - 104.27, 1)


class BrouteSession:
    def __init__(self, config: BrouteConfig, *, on_datagram: Callable[[bytes], None]):
        self.config = config
        self.status = LinkStatus()
        self.on_datagram = on_datagram
        self.driver = SkstackDriver(
            config.device,
            baudrate=config.baudrate,
            dialect=config.dialect or Dialect.BP35A1,
            command_timeout_s=config.command_timeout_s,
            on_udp=self._received,
            on_lost=self._device_lost,
        )
        self._connect_lock = asyncio.Lock()
        self._state_changed = asyncio.Event()
        self._retry_at = 0.0  # monotonic; after AUTH_FAILED / DEVICE_LOST
        self._reopen_round = 0
        self._supervisor: asyncio.Task | None = None

    # -- state -----------------------------------------------------------------------------

    def _set_state(self, state: LinkState, error: str | None = None) -> None:
        if state != self.status.state:
            log.info("B-route link %s -> %s%s", self.status.state, state,
                     f" ({error})" if error else "")  # fmt: skip
            self.status.state, self.status.since = state, time.time()
        if error is not None:
            self.status.last_error = error
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    async def wait_state_change(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._state_changed.wait(), timeout_s)

    @property
    def joined(self) -> bool:
        return self.status.state == LinkState.JOINED

    # -- lifecycle -------------------------------------------------------------------------

    async def ensure_joined(self) -> None:
        """Return once the session is up, connecting (or waiting out a re-authentication)
        as needed; raise `LinkDown` when it cannot be had now."""
        if self.status.state == LinkState.REAUTHENTICATING:
            deadline = asyncio.get_running_loop().time() + self.config.reauth_timeout_s
            while self.status.state == LinkState.REAUTHENTICATING:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    self._set_state(LinkState.CLOSED, "no EVENT 25 after the session expired")
                    break
                await self.wait_state_change(left)
        if self.joined:
            return
        async with self._connect_lock:
            if self.joined:
                return
            if time.monotonic() < self._retry_at:
                raise self._down_error()
            await self._connect()

    def _down_error(self) -> LinkDown:
        state, why = self.status.state, self.status.last_error or str(self.status.state)
        wait = max(0.0, self._retry_at - time.monotonic())
        message = f"{why}; next try in {wait:.0f} s"
        if state == LinkState.AUTH_FAILED:
            return AuthenticationFailed(message, state, why)
        if state == LinkState.NO_METER:
            return MeterNotFound(message, state, why)
        return LinkDown(message, state, why)

    async def survey(self) -> list[PanDescriptor]:
        """Open, reset, probe and scan with a widening duration: every PAN that answered
        the first scan that found any (none: an empty list)."""
        await self._open_and_reset()
        await self._probe()
        await self.driver.set_credentials(self.config.route_b_id, self.config.password)
        for duration in self.config.scan_durations:
            found = await self.driver.scan(duration)
            if found:
                return sorted(found, key=lambda pan: -pan.lqi)
            log.info("scan of duration %d found no meter; widening", duration)
        return []

    async def _connect(self) -> None:
        self._set_state(LinkState.CONNECTING)
        try:
            pans = await self.survey()
            if not pans:
                self._retry_at = time.monotonic() + self.config.join_backoff_s * 8
                self._set_state(
                    LinkState.NO_METER,
                    "no smart meter answered scans up to duration "
                    f"{self.config.scan_durations[-1]}; check that the dongle is within reach "
                    "of the meter and that B-route service is on",
                )
                raise self._down_error()
            await self._join(pans[0])  # the best LQI
        except DongleUnavailable as err:
            self._reopen_later(str(err))
            raise self._down_error() from None
        except (CommandTimeout, CommandFailed, TimeoutError) as err:
            # A dongle that hangs or refuses mid-join: start over from a reset next time.
            self.driver.close()
            self._reopen_later(f"the dongle stopped answering while joining: {err}")
            raise self._down_error() from None
        self._reopen_round = 0
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise())

    def _reopen_later(self, why: str) -> None:
        delays = self.config.reopen_backoff_s
        delay = delays[min(self._reopen_round, len(delays) - 1)]
        self._reopen_round += 1
        self._retry_at = time.monotonic() + delay
        self._set_state(LinkState.DEVICE_LOST, why)

    async def _open_and_reset(self) -> None:
        if not self.driver.is_open:
            self.driver.open()
            self.status.reopens += 1
        try:
            await self.driver.reset()
        except CommandTimeout:
            # A hung dongle may not hear SKRESET: re-open the port (on USB dongles this
            # also power-cycles the serial side) and try once more.
            self.driver.close()
            self.driver.open()
            self.status.reopens += 1
            await self.driver.reset()
        self.status.resets += 1

    async def _probe(self) -> None:
        self.status.firmware = await self.driver.version()
        info = await self.driver.info()
        dialect = self.config.dialect or (Dialect.BP35A1 if info.side is None else Dialect.BP35C2)
        self.driver.set_dialect(dialect)
        self.status.dialect = dialect.value
        if dialect == Dialect.BP35C2:
            try:
                await self.driver.set_register("SA2", "1")
            except CommandFailed as err:
                # Single-side firmware has no SA2; ERXUDP then comes without its LQI field,
                # which the parser reads as well (docs/skstack.md).
                log.info("SKSREG SA2 1 refused (%s): going on without LQI in ERXUDP", err)

    async def _join(self, pan: PanDescriptor) -> None:
        self.status.channel, self.status.pan_id = pan.channel, pan.pan_id
        self.status.lqi, self.status.meter_mac = pan.lqi, pan.mac
        await self.driver.set_register("S2", f"{pan.channel:02X}")
        await self.driver.set_register("S3", f"{pan.pan_id:04X}")
        address = await self.driver.link_local(pan.mac)
        self.status.meter_address = address
        backoff = self.config.join_backoff_s
        for attempt in range(self.config.join_attempts):
            if await self.driver.join(address, timeout_s=self.config.join_timeout_s):
                self.status.joins += 1
                self._set_state(LinkState.JOINED)
                return
            self.status.join_failures += 1
            if attempt + 1 < self.config.join_attempts:
                await asyncio.sleep(backoff)
                backoff *= 2
        self._retry_at = time.monotonic() + self.config.auth_retry_after_s
        self._set_state(
            LinkState.AUTH_FAILED,
            f"PANA authentication failed {self.config.join_attempts} times: check the "
            "B-route ID and password (a meter far away fails the same way)",
        )
        raise self._down_error()

    async def _supervise(self) -> None:
        """Follow the session's events while it lives."""
        with self.driver.listen() as queue:
            while True:
                item = await queue.get()
                if isinstance(item, Event):
                    self._on_event(item)

    def _on_event(self, event: Event) -> None:
        code = event.code
        if code == EVENT_SESSION_EXPIRED:
            self.status.session_expiries += 1
            if self.status.state == LinkState.JOINED:
                self._set_state(LinkState.REAUTHENTICATING)
        elif code == EVENT_PANA_OK and self.status.state == LinkState.REAUTHENTICATING:
            self._set_state(LinkState.JOINED)
        elif code == EVENT_PANA_FAILED and self.status.state in (
            LinkState.REAUTHENTICATING,
            LinkState.JOINED,
        ):
            self._set_state(LinkState.CLOSED, "re-authentication failed (EVENT 24)")
        elif code == EVENT_SESSION_ENDED_BY_METER:
            self._set_state(LinkState.CLOSED, "the meter ended the session (EVENT 26)")
        elif code == EVENT_TX_LIMIT:
            self.status.transmit_limited = True
        elif code == EVENT_TX_LIMIT_RELEASED:
            self.status.transmit_limited = False

    def _device_lost(self, err: Exception | None) -> None:
        self._retry_at = 0.0  # try to re-open at the next request
        self._set_state(LinkState.DEVICE_LOST, f"the dongle went away: {err or 'end of file'}")

    def _received(self, datagram: ReceivedUdp) -> None:
        if datagram.lqi is not None:  # BP35C2 with SA2 1: the link's quality, now
            self.status.lqi = datagram.lqi
        if datagram.dest_port == ECHONET_PORT:
            self.on_datagram(datagram.data)

    # -- traffic ---------------------------------------------------------------------------

    async def send(self, payload: bytes) -> bool:
        """Send one ECHONET Lite frame to the meter; the answer comes to `on_datagram`.
        False when the dongle said it could not send (EVENT 21 result 01/02: no session,
        re-authenticating, transmit limit). A hung dongle raises `LinkDown` and is reset
        and re-joined at the next call."""
        await self.ensure_joined()
        address = self.status.meter_address
        assert address is not None
        try:
            return await self.driver.send_udp(address, ECHONET_PORT, payload) == 0
        except CommandTimeout as err:
            self._set_state(LinkState.CLOSED, str(err))  # the next request rebuilds it all
            raise LinkDown(str(err), LinkState.CLOSED) from None
        except DongleUnavailable as err:
            self._device_lost(err)
            raise LinkDown(str(err), LinkState.DEVICE_LOST) from None
        finally:
            self.status.garbled_lines = self.driver.garbled_lines

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            self._supervisor = None
        if self.driver.is_open and self.joined:
            await self.driver.terminate()
        self.driver.close()
        self._set_state(LinkState.CLOSED)
