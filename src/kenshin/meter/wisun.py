"""A meter reached over Wi-SUN B-route through an SKSTACK IP dongle: the `MeterLink`
that carries ECHONET Lite requests over a `BrouteSession`.

A request survives what the link does to it: a frame lost on the radio is sent again
(same TID, so a late answer still counts and a doubled one is dropped); a session that
expires mid-read is waited out (EVENT 29 → 25) and the request repeated without using up
an attempt; a hung dongle is reset and the session rebuilt. Only when the meter stays
silent through every attempt does the caller get `MeterTimeout`; when the link itself is
down (wrong password, no meter in reach, dongle unplugged) it gets `MeterLinkDown`, whose
`state` the gateway reports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from kenshin.echonet.errors import EchonetDecodeError
from kenshin.echonet.frame import CONTROLLER, ESV, SMART_METER, Frame, Property, decode_frame
from kenshin.echonet.udp import Notification, Response, typed_values
from kenshin.wisun.session import BrouteConfig, BrouteSession, LinkDown, LinkState, LinkStatus

from .session import MeterError, MeterTimeout


class MeterLinkDown(MeterError):
    """The B-route link is down; `state` says why (auth_failed, no_meter, device_lost...)."""

    def __init__(self, message: str, state: LinkState, reason: str | None = None):
        super().__init__(message)
        self.state = state
        self.reason = reason or message  # without "next try in ...": for one-shot callers


class WisunMeterLink:
    def __init__(
        self,
        config: BrouteConfig,
        *,
        request_timeout_s: float = 20.0,  # the AIF specification's answer timer
        attempts: int = 3,
        max_link_retries: int = 5,  # re-sends after expiry or reset, not counted as attempts
    ):
        self.config = config
        self.description = f"wisun://{config.device}"
        self.request_timeout_s, self.attempts = request_timeout_s, attempts
        self.max_link_retries = max_link_retries
        self.session = BrouteSession(config, on_datagram=self._datagram)
        self._next_tid = 1
        self._waiting: dict[int, asyncio.Future[Frame]] = {}
        self._lock = asyncio.Lock()  # one request at a time: meters answer one at a time
        self._notifications: asyncio.Queue[Notification] = asyncio.Queue(maxsize=1000)
        self.stale_answers = 0
        self.malformed = 0

    @property
    def status(self) -> LinkStatus:
        return self.session.status

    async def open(self) -> None:
        """Join now (instead of at the first request), raising `MeterLinkDown` if it fails."""
        try:
            await self.session.ensure_joined()
        except LinkDown as err:
            raise MeterLinkDown(str(err), err.state, err.reason) from None

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> WisunMeterLink:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- receiving -------------------------------------------------------------------------

    def _datagram(self, data: bytes) -> None:
        try:
            frame = decode_frame(data)
        except EchonetDecodeError:
            self.malformed += 1
            return
        if not isinstance(frame, Frame):
            return
        if frame.esv in (ESV.INF, ESV.INFC) and frame.tid not in self._waiting:
            note = Notification(frame, (self.status.meter_address or "", 0x0E1A),
                                typed_values(frame, frame.props))  # fmt: skip
            with contextlib.suppress(asyncio.QueueFull):
                self._notifications.put_nowait(note)
            return
        future = self._waiting.get(frame.tid)
        if future is None or future.done():
            self.stale_answers += 1
            return
        future.set_result(frame)

    async def notifications(self) -> AsyncIterator[Notification]:
        """The meter's unsolicited announcements (EA/EB each half hour)."""
        while True:
            yield await self._notifications.get()

    # -- requests --------------------------------------------------------------------------

    def _allocate_tid(self) -> int:
        tid = self._next_tid
        self._next_tid = tid % 0xFFFF + 1
        return tid

    async def request(
        self, esv: ESV, props: list[Property], props_get: list[Property] | None = None
    ) -> Response:
        async with self._lock:
            frame = Frame(self._allocate_tid(), CONTROLLER, SMART_METER, esv, tuple(props),
                          tuple(props_get or ()))  # fmt: skip
            future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
            self._waiting[frame.tid] = future
            try:
                answer = await self._exchange(frame, future)
            finally:
                del self._waiting[frame.tid]
            return Response.from_frame(answer, (self.status.meter_address or "", 0x0E1A), frame)

    async def _exchange(self, frame: Frame, future: asyncio.Future[Frame]) -> Frame:
        payload = frame.to_bytes()
        attempts = link_retries = 0
        while True:
            expiries = self.status.session_expiries
            try:
                sent = await self.session.send(payload)
            except LinkDown as err:
                if err.state == LinkState.CLOSED and link_retries < self.max_link_retries:
                    link_retries += 1  # a hung dongle was noticed: rebuild and send again
                    continue
                raise MeterLinkDown(str(err), err.state, err.reason) from None
            if not sent and link_retries < self.max_link_retries:
                # Refused by the dongle (re-authenticating, transmit limit): wait for the
                # session to settle, then send again.
                link_retries += 1
                await self.session.wait_state_change(min(1.0, self.request_timeout_s))
                continue
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(future), self.request_timeout_s)
            if (
                self.status.session_expiries != expiries or not self.session.joined
            ) and link_retries < self.max_link_retries:
                link_retries += 1  # lost to a session expiry or reset: not the meter's fault
                continue
            attempts += 1
            if attempts >= self.attempts:
                epcs = ",".join(f"{p.epc:02X}" for p in (*frame.props, *frame.props_get))
                raise MeterTimeout(
                    f"no answer from the meter at {self.status.meter_address} over "
                    f"{self.config.device} to {frame.esv.name} EPC {epcs} after {attempts} "
                    f"attempts of {self.request_timeout_s:g} s"
                )
