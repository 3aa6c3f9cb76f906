"""A serial port for asyncio, on pyserial: pyserial opens and configures the line (baud,
8N1, no flow control), the event loop watches its file descriptor, so no thread blocks.

An unplugged dongle shows as a read error or end of file; both end in `on_lost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)


class DongleUnavailable(OSError):
    """The serial device cannot be opened or has gone away (unplugged, no permission)."""


class SerialPort:
    def __init__(
        self,
        path: str,
        baudrate: int,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[Exception | None], None],
    ):
        self.path, self.baudrate = path, baudrate
        self._on_data, self._on_lost = on_data, on_lost
        self._serial = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> None:
        import serial  # the gateway extra; imported here so the parser needs no pyserial

        try:
            self._serial = serial.Serial(
                self.path, self.baudrate, bytesize=8, parity="N", stopbits=1, timeout=0,
                write_timeout=2, exclusive=True,
            )  # fmt: skip
        except (serial.SerialException, OSError) as err:
            raise DongleUnavailable(
                f"cannot open {self.path}: {err}. Check that the dongle is plugged in and "
                "that this user may open it (group dialout)"
            ) from None
        self._fd = self._serial.fileno()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._readable)
        with contextlib.suppress(Exception):
            self._serial.reset_input_buffer()  # whatever an earlier session left behind

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096) if self._fd is not None else b""
        except BlockingIOError:
            return
        except OSError as err:
            self._lose(err)
            return
        if not data:
            self._lose(None)
            return
        self._on_data(data)

    def _lose(self, err: Exception | None) -> None:
        self.close()
        self._on_lost(err)

    def write(self, data: bytes) -> None:
        if self._fd is None:
            raise DongleUnavailable(f"{self.path} is not open")
        try:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self._fd, view)
                except BlockingIOError:
                    continue  # a full output buffer at 115200 baud drains in milliseconds
                view = view[written:]
        except OSError as err:
            self._lose(err)
            raise DongleUnavailable(f"writing to {self.path} failed: {err}") from None

    def close(self) -> None:
        if self._fd is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
        self._fd = None
        if self._serial is not None:
            with contextlib.suppress(Exception):
                self._serial.close()
            self._serial = None
