"""The SKSTACK IP dongle emulator, driven through pyserial on its real pty."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from datetime import datetime, timedelta

import pytest
import serial

from kenshin.echonet.frame import (
    CONTROLLER,
    ESV,
    SMART_METER,
    Frame,
    Property,
    decode_frame,
    encode_frame,
)
from kenshin.sim.clock import JST, ManualClock
from kenshin.sim.dongle import DongleEmulator, DongleFaults, DongleModel
from kenshin.sim.meter import MeterConfig, SimulatedMeter

RBID = "00112233445566778899AABBCCDDEEFF"
PWD = "0123456789AB"
START = datetime(2026, 1, 15, 10, 0, 5, tzinfo=JST)
MODELS = pytest.mark.parametrize("model", list(DongleModel), ids=lambda m: m.value)


class Port:
    """A host on the pty: pyserial, a byte buffer, and a parser that reads binary ERXUDP
    data by its length (it may hold CR and LF)."""

    def __init__(self, path: str, model: DongleModel):
        self.ser = serial.Serial(path, 115200, timeout=0.02)
        self.model = model
        self.buf = bytearray()
        self.hex = False  # WOPT 01

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ser.close()

    def send(self, text: str) -> None:
        self.ser.write(text.encode("ascii") + b"\r\n")

    def sendto(self, address: str, payload: bytes, *, sec: int = 1) -> None:
        side = " 0" if self.model is DongleModel.BP35C2 else ""
        head = f"SKSENDTO 1 {address} 0E1A {sec}{side} {len(payload):04X} "
        self.ser.write(head.encode("ascii") + payload)

    def _take(self) -> bytes | None:
        buf = self.buf
        if buf.startswith(b"ERXUDP ") and not self.hex:
            pos = len(b"ERXUDP ")
            start = pos
            for _ in range(header_fields(bytes(buf), self.model)):
                space = buf.find(b" ", pos)
                if space < 0:
                    return None
                start, pos = pos, space + 1
            end = pos + int(buf[start : pos - 1], 16)
            if len(buf) < end + 2:
                return None
            assert buf[end : end + 2] == b"\r\n"
            line = bytes(buf[:end])
            del buf[: end + 2]
            return line
        i = buf.find(b"\r\n")
        if i < 0:
            return None
        line = bytes(buf[:i])
        del buf[: i + 2]
        return line

    def line(self, timeout: float = 3.0) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            got = self._take()
            if got is not None:
                return got
            if time.monotonic() > deadline:
                return None
            self.buf += self.ser.read(max(1, self.ser.in_waiting))

    def until(self, want, timeout: float = 3.0) -> list[bytes]:
        """Lines up to and including the first that starts with `want` (bytes or tuple)."""
        seen: list[bytes] = []
        deadline = time.monotonic() + timeout
        while (line := self.line(max(0.0, deadline - time.monotonic()))) is not None:
            seen.append(line)
            if line.startswith(want):
                return seen
        raise AssertionError(f"no {want!r} within {timeout} s; got {seen!r}")

    def command(self, text: str) -> list[bytes]:
        self.send(text)
        return self.until((b"OK", b"FAIL"))


async def io(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


def run(main) -> None:
    asyncio.run(asyncio.wait_for(main(), 15))


@contextlib.asynccontextmanager
async def rig(model: DongleModel, clock: ManualClock | None = None, **kwargs):
    clock = clock or ManualClock(START)
    meter = SimulatedMeter(clock, MeterConfig(seed=3))
    kwargs.setdefault("seed", 7)
    emulator = DongleEmulator(meter, model=model, route_b_id=RBID, password=PWD, **kwargs)
    await emulator.start()
    port = await io(Port, emulator.path, model)
    try:
        yield emulator, port
    finally:
        port.close()
        emulator.close()


def ip(emulator: DongleEmulator, which: str = "meter") -> str:
    address = emulator.meter_ip if which == "meter" else emulator.dongle_ip
    return address.exploded.upper()


def side(model: DongleModel) -> str:
    return " 0" if model is DongleModel.BP35C2 else ""


async def join(emulator: DongleEmulator, port: Port, password: str = PWD) -> list[bytes]:
    for text in (
        f"SKSETRBID {RBID}",
        f"SKSETPWD {len(password):X} {password}",
        f"SKSREG S2 {emulator.channel:02X}",
        f"SKSREG S3 {emulator.pan_id:04X}",
    ):
        assert (await io(port.command, text))[-1] == b"OK"
    port.send(f"SKJOIN {ip(emulator)}")
    return await io(port.until, (b"EVENT 25", b"EVENT 24"))


def get_e7(tid: int = 0x0101) -> bytes:
    return encode_frame(Frame(tid, CONTROLLER, SMART_METER, ESV.GET, (Property(0xE7),)))


def header_fields(line: bytes, model: DongleModel) -> int:
    """Fields of an ERXUDP header after the word: 7 on the BP35A1; on the BP35C2 9 with
    LQI (register SA2 1: the sixth field is 2 hex digits) and 8 without."""
    if model is DongleModel.BP35A1:
        return 7
    sixth = line.split(b" ", 7)[6:7]
    return 8 if sixth and len(sixth[0]) == 1 else 9


def erxudp(line: bytes, model: DongleModel, *, hex_data: bool = False) -> tuple[list[str], bytes]:
    count = header_fields(line, model)
    parts = line.split(b" ", count + 1)
    fields = [p.decode("ascii") for p in parts[1 : count + 1]]
    data = parts[count + 1]
    if hex_data:
        data = bytes.fromhex(data.decode("ascii"))
    assert len(data) == int(fields[-1], 16)
    return fields, data


# -- identity, echo, errors ------------------------------------------------------------------


@MODELS
def test_identity_lines(model):
    async def main():
        async with rig(model) as (emu, port):
            lines = await io(port.command, "SKVER")
            version = "1.2.10" if model is DongleModel.BP35A1 else "1.5.2"
            assert lines == [b"SKVER", f"EVER {version}".encode(), b"OK"]
            lines = await io(port.command, "SKAPPVER")
            assert lines[0] == b"SKAPPVER" and lines[1].startswith(b"EAPPVER ")
            lines = await io(port.command, "SKINFO")
            fields = lines[1].decode().split(" ")
            assert fields[0] == "EINFO" and lines[2] == b"OK"
            assert fields[1] == ip(emu, "dongle") and fields[2] == f"{emu.dongle_mac:016X}"
            assert fields[3] == "21" and fields[4] == "FFFF"
            assert fields[5] == ("FFFE" if model is DongleModel.BP35A1 else "0")  # side
            assert len(fields) == 6

    run(main)


@MODELS
def test_echo_can_be_switched_off(model):
    async def main():
        async with rig(model) as (_, port):
            assert await io(port.command, "SKSREG SFE 0") == [b"SKSREG SFE 0", b"OK"]
            assert (await io(port.command, "SKVER"))[0].startswith(b"EVER ")
            assert await io(port.command, "SKSREG S2") == [b"ESREG 21", b"OK"]
            assert await io(port.command, "SKSREG SFE 1") == [b"OK"]
            assert (await io(port.command, "SKVER"))[0] == b"SKVER"

    run(main)


@MODELS
def test_fail_codes(model):
    async def main():
        async with rig(model) as (_, port):
            assert await io(port.command, "SKFOO 1") == [b"SKFOO 1", b"FAIL ER04"]
            assert (await io(port.command, "SKLL64"))[-1] == b"FAIL ER05"
            assert (await io(port.command, "SKSREG S2 ZZ"))[-1] == b"FAIL ER06"
            assert (await io(port.command, "SKSREG S2 10"))[-1] == b"FAIL ER06"
            assert (await io(port.command, "SKTERM"))[-1] == b"FAIL ER10"
            assert (await io(port.command, "SKSREG SA2 1"))[-1] == b"OK"  # A1: no effect
            wrong_scan = "SKSCAN 2 FFFFFFFF 3" + ("" if model is DongleModel.BP35C2 else " 0")
            assert (await io(port.command, wrong_scan))[-1] == b"FAIL ER05"

    run(main)


@MODELS
def test_skll64_answers_the_link_local_address_alone(model):
    async def main():
        async with rig(model) as (emu, port):
            port.send("SKLL64 001D129012345678")
            lines = [await io(port.line), await io(port.line)]
            assert lines == [b"SKLL64 001D129012345678", b"FE80:0000:0000:0000:021D:1290:1234:5678"]
            assert await io(port.line, 0.2) is None  # no OK after it
            port.send(f"SKLL64 {emu.meter_mac:016X}")
            assert (await io(port.until, b"FE80"))[-1].decode() == ip(emu)

    run(main)


# -- scan and join ---------------------------------------------------------------------------


@MODELS
def test_scan_needs_a_wide_enough_duration(model):
    async def main():
        async with rig(model) as (emu, port):
            tail = side(model)
            port.send(f"SKSCAN 2 FFFFFFFF 3{tail}")
            lines = await io(port.until, b"EVENT 22")
            assert b"OK" in lines and not any(x.startswith(b"EVENT 20") for x in lines)
            assert lines[-1] == f"EVENT 22 {ip(emu, 'dongle')}{tail}".encode()
            port.send(f"SKSCAN 2 FFFFFFFF 6{tail}")
            lines = await io(port.until, b"EVENT 22")
            i = lines.index(f"EVENT 20 {ip(emu)}{tail}".encode())
            assert lines[i + 1] == b"EPANDESC"
            block = [x.decode() for x in lines[i + 2 : -1]]
            expected = [
                f"  Channel:{emu.channel:02X}",
                "  Channel Page:09",
                f"  Pan ID:{emu.pan_id:04X}",
                f"  Addr:{emu.meter_mac:016X}",
                f"  LQI:{emu.lqi:02X}",
                *(["  Side:0"] if model is DongleModel.BP35C2 else []),
                f"  PairID:{RBID[-8:]}",
            ]
            assert block == expected

    run(main)


@MODELS
def test_scan_misses_and_hidden_meter(model):
    async def main():
        async with rig(model, faults=DongleFaults(scan_misses=1)) as (emu, port):
            scan = f"SKSCAN 2 FFFFFFFF 5{side(model)}"
            for expect_found in (False, True):
                port.send(scan)
                lines = await io(port.until, b"EVENT 22")
                assert any(x.startswith(b"EVENT 20") for x in lines) is expect_found
            emu.faults.hidden_from_scan = True
            port.send(scan)
            assert not any(x.startswith(b"EVENT 20") for x in await io(port.until, b"EVENT 22"))

    run(main)


@MODELS
def test_join_needs_the_right_password(model):
    async def main():
        async with rig(model) as (emu, port):
            lines = await join(emu, port, password="WRONGPASSWD0")
            assert lines[-1] == f"EVENT 24 {ip(emu)}{side(model)}".encode()
            assert not emu.joined
            lines = await join(emu, port)
            assert lines[-1] == f"EVENT 25 {ip(emu)}{side(model)}".encode()
            assert lines[1] == b"OK"  # after the echo
            assert emu.joined and emu.joins == 1 and emu.join_attempts == 2
            assert (await io(port.command, f"SKJOIN {ip(emu)}"))[-1] == b"FAIL ER10"

    run(main)


@MODELS
def test_radio_misses_a_join(model):
    async def main():
        async with rig(model, faults=DongleFaults(join_failures=1)) as (emu, port):
            assert (await join(emu, port))[-1].startswith(b"EVENT 24")
            port.send(f"SKJOIN {ip(emu)}")
            assert (await io(port.until, (b"EVENT 25", b"EVENT 24")))[-1].startswith(b"EVENT 25")

    run(main)


# -- UDP -------------------------------------------------------------------------------------


@MODELS
def test_sendto_get_answers_get_res_in_binary(model):
    async def main():
        async with rig(model) as (emu, port):
            port.sendto(ip(emu), get_e7())  # not joined yet: refused
            lines = await io(port.until, b"OK")
            assert lines[-2] == f"EVENT 21 {ip(emu)}{side(model)} 01".encode()
            await join(emu, port)
            port.sendto(ip(emu), get_e7(0x0202))
            lines = await io(port.until, b"OK")
            expected_echo = f"SKSENDTO 1 {ip(emu)} 0E1A 1{side(model)} 000E "
            assert lines[-3:] == [
                expected_echo.encode(),
                f"EVENT 21 {ip(emu)}{side(model)} 00".encode(),
                b"OK",
            ]
            # The meter's D5 instance-list INF after the join may come first.
            while True:
                fields, data = erxudp((await io(port.until, b"ERXUDP"))[-1], model)
                if (frame := decode_frame(data)).esv != ESV.INF:
                    break
            assert fields[:5] == [
                ip(emu),
                ip(emu, "dongle"),
                "0E1A",
                "0E1A",
                f"{emu.meter_mac:016X}",
            ]
            if model is DongleModel.BP35C2:
                assert fields[5:7] == ["1", "0"]  # register SA2 is 0: no LQI
            else:
                assert fields[5] == "1"
            assert frame.tid == 0x0202 and frame.esv == ESV.GET_RES
            assert frame.seoj == SMART_METER and frame.get(0xE7) is not None
            assert emu.frames_sent == 1 and emu.frames_refused == 1
            if model is DongleModel.BP35C2:  # SA2 1: LQI before the secured flag
                assert (await io(port.command, "SKSREG SA2 1"))[-1] == b"OK"
                port.sendto(ip(emu), get_e7(0x0303))
                while True:  # the D5 INF may still be on its way
                    fields, data = erxudp((await io(port.until, b"ERXUDP"))[-1], model)
                    if decode_frame(data).esv != ESV.INF:
                        break
                assert fields[5:8] == [f"{emu.lqi:02X}", "1", "0"]
                assert decode_frame(data).tid == 0x0303

    run(main)


@pytest.mark.parametrize("sa2_supported", [True, False])
@pytest.mark.parametrize("erxudp_lqi", [None, True, False])
def test_bp35c2_erxudp_lqi_follows_sa2_or_the_option(erxudp_lqi, sa2_supported):
    model = DongleModel.BP35C2
    kw = {"erxudp_lqi": erxudp_lqi, "sa2_supported": sa2_supported}

    async def main():
        async with rig(model, announce_instance_list=False, **kw) as (emu, port):
            answer = (await io(port.command, "SKSREG SA2 1"))[-1]
            assert answer == (b"OK" if sa2_supported else b"FAIL ER06")
            await join(emu, port)
            port.sendto(ip(emu), get_e7(0x0404))
            fields, data = erxudp((await io(port.until, b"ERXUDP"))[-1], model)
            shown = erxudp_lqi if erxudp_lqi is not None else sa2_supported
            assert fields[5:8] == ([f"{emu.lqi:02X}", "1", "0"] if shown else ["1", "0", "0012"])
            assert decode_frame(data).tid == 0x0404

    run(main)


@MODELS
def test_wopt_01_switches_erxudp_to_hex_and_survives_reset(model):
    async def main():
        async with rig(model, announce_instance_list=False) as (emu, port):
            assert await io(port.command, "ROPT") == [b"ROPT", b"OK 00"]
            assert (await io(port.command, "WOPT 01"))[-1] == b"OK"
            assert (await io(port.command, "SKRESET"))[-1] == b"OK"
            assert (await io(port.command, "ROPT"))[-1] == b"OK 01"
            assert emu.option_writes == 1
            port.hex = True
            await join(emu, port)
            port.sendto(ip(emu), get_e7(0x0303))
            line = (await io(port.until, b"ERXUDP"))[-1]
            _, data = erxudp(line, model, hex_data=True)
            frame = decode_frame(data)
            assert frame.tid == 0x0303 and frame.esv == ESV.GET_RES

    run(main)


@MODELS
def test_dropped_frames_never_answer(model):
    async def main():
        async with rig(model, announce_instance_list=False) as (emu, port):
            await join(emu, port)
            emu.faults.drop_rate = 1.0
            port.sendto(ip(emu), get_e7())
            assert (await io(port.until, b"OK"))[-2].endswith(b" 00")  # on air, then lost
            assert await io(port.line, 0.3) is None
            assert emu.frames_dropped == 1 and emu.frames_received == 0

    run(main)


# -- the session over time -------------------------------------------------------------------


@MODELS
def test_session_expiry_reauthenticates(model):
    async def main():
        clock = ManualClock(START)
        lifetime = timedelta(hours=1)
        async with rig(model, clock, session_lifetime=lifetime, reauth_delay_s=0.4) as (emu, port):
            await join(emu, port)
            clock.advance(lifetime + timedelta(seconds=1))
            lines = await io(port.until, b"EVENT 29")
            assert lines[-1] == f"EVENT 29 {ip(emu)}{side(model)}".encode()
            port.sendto(ip(emu), get_e7())  # while re-authenticating: refused
            assert (await io(port.until, b"EVENT 21"))[-1].endswith(b" 01")
            lines = await io(port.until, (b"EVENT 25", b"EVENT 24"))
            assert lines[-1] == f"EVENT 25 {ip(emu)}{side(model)}".encode()
            assert emu.expiries == 1 and emu.reauths == 1 and emu.joined
            # The meter's credentials change (a new contract): the next re-auth fails.
            emu.password = "NEWPASSWORD1"
            clock.advance(lifetime + timedelta(seconds=1))
            await io(port.until, b"EVENT 29")
            assert (await io(port.until, (b"EVENT 25", b"EVENT 24")))[-1].startswith(b"EVENT 24")
            assert not emu.joined

    run(main)


@MODELS
def test_half_hourly_announcement_arrives_while_joined(model):
    async def main():
        clock = ManualClock(START)
        async with rig(model, clock, announce_instance_list=False) as (emu, port):
            await join(emu, port)
            clock.set(emu.meter.next_announcement_time())
            fields, data = erxudp((await io(port.until, b"ERXUDP"))[-1], model)
            assert fields[1] == "FF02:0000:0000:0000:0000:0000:0000:0001"
            frame = decode_frame(data)
            assert frame.esv == ESV.INF and frame.get(0xEA) is not None

    run(main)


# -- faults and the port ---------------------------------------------------------------------


@MODELS
def test_garble_next_corrupts_exactly_one_line(model):
    async def main():
        async with rig(model) as (emu, port):
            clean = await io(port.command, "SKVER")
            emu.faults.garble_next = 1
            port.send("SKVER")
            garbled = [await io(port.line) for _ in clean]
            assert sum(a != b for a, b in zip(clean, garbled, strict=True)) == 1
            assert emu.faults.garble_next == 0
            assert await io(port.command, "SKVER") == clean

    run(main)


@MODELS
def test_silent_dongle_hears_nothing_until_power_cycled(model, tmp_path):
    async def main():
        link = tmp_path / "wisun"
        async with rig(model, link=link) as (emu, port):
            emu.faults.silent = True
            port.send("SKRESET")
            assert await io(port.line, 0.3) is None
            emu.faults.silent = False  # it wakes up having missed the SKRESET
            assert (await io(port.command, "SKVER"))[0] == b"SKVER"
            emu.faults.silent = True
            emu.unplug()
            emu.plug()
            assert not emu.faults.silent
            port2 = await io(Port, str(link), model)
            try:
                assert (await io(port2.command, "SKVER"))[-1] == b"OK"
            finally:
                port2.close()

    run(main)


@MODELS
def test_unplug_and_plug_move_the_pty_and_the_link(model, tmp_path):
    async def main():
        link = tmp_path / "ttyWISUN"
        async with rig(model, link=link) as (emu, port):
            await join(emu, port)
            old = emu.path
            assert os.path.realpath(link) == os.path.realpath(old)
            emu.unplug()
            assert emu.path is None and not os.path.lexists(link)
            with pytest.raises(serial.SerialException):
                await io(port.ser.read, 1)
            emu.plug()
            assert emu.path != old and os.path.realpath(link) == os.path.realpath(emu.path)
            assert not emu.joined
            port2 = await io(Port, str(link), model)
            try:
                assert (await io(port2.command, "SKVER"))[-1] == b"OK"
                lines = await io(port2.command, "SKINFO")
                assert lines[1].split(b" ")[4] == b"FFFF"  # power-on state
            finally:
                port2.close()

    run(main)


def test_credentials_are_not_logged(caplog):
    async def main():
        async with rig(DongleModel.BP35A1) as (emu, port):
            await join(emu, port)
            assert RBID not in repr(emu) and PWD not in repr(emu)

    with caplog.at_level(logging.DEBUG, logger="kenshin.sim.dongle"):
        run(main)
    assert "SKSETPWD C ********" in caplog.text
    assert RBID not in caplog.text and PWD not in caplog.text
