"""The emulated dongle on a real pseudo-terminal: the asyncio adapter around `DongleCore`.

All this module does is I/O and waiting: it owns the pty pair (and the optional symlink
to it), moves bytes between the pty and the core, writes what the host is slow to read
when the pty can take it, and sleeps until the core's next deadline, on the loop's clock
for real delays and on the meter's simulated clock for the PANA lifetime and the half-hour
announcement. What the dongle says and when is decided by the core alone, so it can be
tested without a pty or an event loop (tests/sim/test_dongle_core.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import tty
from datetime import datetime
from pathlib import Path
from typing import Any

from ..meter import SimulatedMeter
from .core import DongleCore

log = logging.getLogger(__name__)

MAX_OUTPUT_BUFFER = 1 << 20  # bytes queued for a host that does not read: the rest is lost


class DongleEmulator:
    """One dongle in front of one meter, reachable through a pty (see the package doc).

    Takes the core's options (`DongleCore`) and `link`, a path kept pointing at the pty.
    The core's settings, counters and state read and write through this object too
    (`emu.faults`, `emu.frames_sent`, `emu.lqi = 0x40`), as they always have."""

    def __init__(self, meter: SimulatedMeter, *, link: Path | str | None = None, **options: Any):
        self.core = DongleCore(meter, **options)
        self.link = Path(link) if link is not None else None
        self.path: str | None = None
        self._previous_path: str | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbuf = bytearray()
        self._writer_armed = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._meter_wait: asyncio.Task | None = None
        self._meter_wait_at: datetime | None = None
        self.core.unplug()  # no pty yet: nothing to hear or print until start()

    def __repr__(self) -> str:
        return (
            f"<DongleEmulator {self.model.value} path={self.path!r} state={self.state} "
            f"channel={self.channel} pan_id={self.pan_id:04X}>"
        )

    # -- what the meter or the radio do to the dongle --------------------------------------

    def scan_seconds(self, duration: int) -> float:
        return self.core.scan_seconds(duration)

    def meter_ends_session(self) -> None:
        """The meter ends the PANA session (EVENT 26)."""
        self.core.meter_ends_session()
        self._pump()

    def arib_limit(self, active: bool) -> None:
        """The ARIB transmit-time limit is reached (EVENT 32) or released (EVENT 33)."""
        self.core.arib_limit(active)
        self._pump()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> DongleEmulator:
        self._loop = asyncio.get_running_loop()
        self._open_pty()
        self.core.plug()
        self._pump()
        return self

    async def __aenter__(self) -> DongleEmulator:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop everything and remove the pty (and the link)."""
        self._disarm()
        self.core.unplug()
        self._close_pty()
        self._unlink()

    def unplug(self) -> None:
        """Pull the dongle out: the pty goes away (the host sees EOF / I/O errors), the
        link is removed, and the session is lost."""
        self.core.unplug()
        self._close_pty()
        self._unlink()
        log.info("dongle unplugged")

    def plug(self) -> None:
        """Plug it back in: a power-on dongle on a NEW pty (`path` changes; the link, if
        any, follows). Clears `faults.silent`."""
        if self._loop is None:
            raise RuntimeError("start() the emulator first")
        self._close_pty()
        self.core.plug()
        self._open_pty()
        self._pump()
        log.info("dongle plugged in at %s", self.path)

    def _unlink(self) -> None:
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        name = os.ttyname(slave)
        if name == self._previous_path:  # a new device name, as a re-plugged stick gets
            master2, slave2 = os.openpty()
            os.close(master)
            os.close(slave)
            master, slave, name = master2, slave2, os.ttyname(slave2)
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave, self.path = master, slave, name
        self._previous_path = name
        self._outbuf.clear()
        assert self._loop is not None
        self._loop.add_reader(master, self._on_readable)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(name, tmp)
            os.replace(tmp, self.link)

    def _close_pty(self) -> None:
        if self._master is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._master)
                if self._writer_armed:
                    self._loop.remove_writer(self._master)
            self._writer_armed = False
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        self.path = None
        self._outbuf.clear()

    # -- the core's bytes and timers -----------------------------------------------------

    def _pump(self) -> None:
        """After every call into the core: write what it printed, wait for what it wants."""
        data = self.core.data_to_send()
        if data:
            self._write(data)
        if self._loop is None or self._loop.is_closed():
            return
        at = self.core.next_deadline()
        if at != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = None, at
            if at is not None:
                self._timer = self._loop.call_at(at, self._on_timer, at)
        moment = self.core.next_meter_deadline()
        if moment != self._meter_wait_at:
            if self._meter_wait is not None:
                self._meter_wait.cancel()
            self._meter_wait, self._meter_wait_at = None, moment
            if moment is not None:
                self._meter_wait = self._loop.create_task(self._on_meter_time(moment))

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._meter_wait is not None:
            with contextlib.suppress(RuntimeError):  # close() after the loop has ended
                self._meter_wait.cancel()
        self._timer = self._meter_wait = None
        self._timer_at = self._meter_wait_at = None

    def _on_timer(self, at: float) -> None:
        self._timer = self._timer_at = None
        assert self._loop is not None
        # The loop may run a timer a hair before its time: it is due, all the same.
        self.core.advance(max(self._loop.time(), at))
        self._pump()

    async def _on_meter_time(self, moment: datetime) -> None:
        await self.core.meter.clock.sleep_until(moment)
        self._meter_wait = self._meter_wait_at = None
        assert self._loop is not None
        self.core.advance(self._loop.time())
        self._pump()

    def _on_readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open right now: nothing to read
                return
            raise
        if not data:
            return
        assert self._loop is not None
        self.core.receive_data(data, self._loop.time())
        self._pump()

    def _write(self, data: bytes) -> None:
        if self._master is None:
            return
        if len(self._outbuf) + len(data) > MAX_OUTPUT_BUFFER:
            log.warning("host is not reading: %d bytes of output lost", len(data))
            return
        self._outbuf += data
        self._flush()

    def _flush(self) -> None:
        if self._master is None:
            return
        while self._outbuf:
            try:
                written = os.write(self._master, self._outbuf)
            except BlockingIOError:
                break
            except OSError as exc:
                log.warning("pty write failed: %s", exc)
                self._outbuf.clear()
                break
            del self._outbuf[:written]
        assert self._loop is not None
        if self._outbuf and not self._writer_armed:
            self._loop.add_writer(self._master, self._flush)
            self._writer_armed = True
        elif not self._outbuf and self._writer_armed:
            self._loop.remove_writer(self._master)
            self._writer_armed = False


def _delegate(name: str) -> property:
    return property(
        lambda self: getattr(self.core, name),
        lambda self, value: setattr(self.core, name, value),
        doc=f"The core's `{name}`.",
    )


# What callers have always read (and some written) on the emulator itself: the core's
# settings, its counters and its state, passed through rather than copied.
for _name in (
    *("meter", "model", "route_b_id", "password", "session_lifetime", "faults"),
    *("channel", "pan_id", "meter_mac", "dongle_mac", "meter_ip", "dongle_ip", "lqi"),
    *("erxudp_lqi", "sa2_supported", "has_ropt", "wopt", "wopt_limit", "registers"),
    *("scan_threshold", "scan_base_s", "scan_cap_s", "join_delay_s", "reauth_delay_s"),
    *("answer_latency_s", "announce_instance_list", "pana_noise"),
    *("frames_sent", "frames_refused", "frames_received", "frames_dropped"),
    *("join_attempts", "joins", "reauths", "expiries", "option_writes", "commands"),
    *("joined", "state", "echo", "pair_id"),
):
    setattr(DongleEmulator, _name, _delegate(_name))
