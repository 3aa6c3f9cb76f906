"""The dongle emulator's core with no pty and no event loop: lines in, a fake clock moved
by hand, lines out. What tests/sim/test_dongle.py checks through a real pty, here in
microseconds, plus the fuzz: whatever the host writes, the core answers and never raises."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.echonet.frame import CONTROLLER, ESV, SMART_METER, Frame, Property, encode_frame
from kenshin.sim.clock import JST, ManualClock
from kenshin.sim.dongle import DongleCore, DongleFaults, DongleModel
from kenshin.sim.meter import MeterConfig, SimulatedMeter
from kenshin.wisun import Dialect, SkstackParser

RBID = "00112233445566778899AABBCCDDEEFF"
PWD = "0123456789AB"
START = datetime(2026, 1, 15, 10, 0, 5, tzinfo=JST)
MODELS = pytest.mark.parametrize("model", list(DongleModel), ids=lambda m: m.value)
# What ends the answer to any one command line (SKLL64 answers with the address alone).
ANSWER_END = re.compile(
    rb"^(OK( [0-9A-F]{2})?|FAIL ER(04|05|06|09|10)|[0-9A-F]{4}(:[0-9A-F]{4}){7})$"
)


class Host:
    """A host on the core: writes lines at a fake real time and reads what came out."""

    def __init__(self, model: DongleModel = DongleModel.BP35A1, **options):
        self.clock = ManualClock(START)  # the meter's clock
        meter = SimulatedMeter(self.clock, MeterConfig(seed=3))
        options.setdefault("seed", 7)
        # Delays that binary floating point holds exactly, so waits add up to deadlines.
        options.setdefault("join_delay_s", 0.5)
        options.setdefault("reauth_delay_s", 0.5)
        options.setdefault("answer_latency_s", 0.25)
        self.core = DongleCore(meter, model=model, route_b_id=RBID, password=PWD, **options)
        self.now = 0.0  # real seconds

    def send(self, data: str | bytes) -> list[bytes]:
        raw = data.encode("ascii") + b"\r\n" if isinstance(data, str) else data
        self.core.receive_data(raw, self.now)
        return self.lines()

    def wait(self, seconds: float) -> list[bytes]:
        self.now += seconds
        self.core.advance(self.now)
        return self.lines()

    def lines(self) -> list[bytes]:
        out = self.core.data_to_send()
        assert out == b"" or out.endswith(b"\r\n")
        return out[:-2].split(b"\r\n") if out else []

    def join(self) -> list[bytes]:
        core = self.core
        for text in (
            f"SKSETRBID {RBID}",
            f"SKSETPWD {len(PWD):X} {PWD}",
            f"SKSREG S2 {core.channel:02X}",
            f"SKSREG S3 {core.pan_id:04X}",
        ):
            assert self.send(text)[-1] == b"OK"
        assert self.send(f"SKJOIN {ip(core.meter_ip)}")[-1] == b"OK"
        return self.wait(core.join_delay_s)


def ip(address) -> str:
    return address.exploded.upper()


def side(model: DongleModel) -> str:
    return " 0" if model.has_side else ""


def get_e7() -> bytes:
    return encode_frame(Frame(0x0101, CONTROLLER, SMART_METER, ESV.GET, (Property(0xE7),)))


def sendto(host: Host, payload: bytes) -> bytes:
    head = f"SKSENDTO 1 {ip(host.core.meter_ip)} 0E1A 1{side(host.core.model)} {len(payload):04X} "
    return head.encode("ascii") + payload


@MODELS
def test_a_command_is_echoed_and_answered_at_once(model):
    host = Host(model)
    version = "1.2.10" if model is DongleModel.BP35A1 else "1.5.2"
    assert host.send("SKVER") == [b"SKVER", f"EVER {version}".encode(), b"OK"]
    assert host.send("NOSUCH 1") == [b"NOSUCH 1", b"FAIL ER04"]
    assert host.send("SKVER 1") == [b"SKVER 1", b"FAIL ER05"]
    assert host.core.commands == 3


def test_the_chunking_of_input_changes_nothing():
    whole, bytewise = Host(), Host()
    script = b"SKVER\r\nSKSREG SFE 0\r\n\r\nSKINFO\nSKSREG S2 ZZ\r\n"
    expected = whole.send(script)
    got: list[bytes] = []
    for i in range(len(script)):
        got += bytewise.send(script[i : i + 1])
    assert got == expected and expected[-1] == b"FAIL ER06"


@MODELS
def test_a_scan_reports_the_meter_halfway_and_ends_on_time(model):
    host = Host(model)
    total = host.core.scan_seconds(6)
    assert host.send(f"SKSCAN 2 FFFFFFFF 6{side(model)}")[-1] == b"OK"
    assert host.core.next_deadline() == pytest.approx(total / 2)
    assert host.wait(total / 2 - 0.001) == []
    beacon = host.wait(0.001)
    assert beacon[0] == f"EVENT 20 {ip(host.core.meter_ip)}{side(model)}".encode()
    assert beacon[1] == b"EPANDESC" and beacon[-1] == f"  PairID:{RBID[-8:]}".encode()
    assert host.wait(total / 2) == [f"EVENT 22 {ip(host.core.dongle_ip)}{side(model)}".encode()]
    assert host.send(f"SKSCAN 2 FFFFFFFF 6{side(model)}")[-1] == b"OK"  # no longer scanning


@MODELS
def test_join_steps_and_verdict_follow_the_fake_clock(model):
    host = Host(model, pana_noise=False, announce_instance_list=False)
    lines = host.join()
    meter = ip(host.core.meter_ip) + side(model)
    assert lines == [
        f"EVENT 21 {meter} 02".encode(),
        f"EVENT 02 {meter}".encode(),
        f"EVENT 21 {meter} 00".encode(),
        f"EVENT 21 {meter} 00".encode(),
        f"EVENT 25 {meter}".encode(),
    ]
    assert host.core.joined and host.core.joins == 1
    again = f"SKJOIN {ip(host.core.meter_ip)}"
    assert host.send(again) == [again.encode(), b"FAIL ER10"]


def test_a_wrong_password_ends_in_event_24():
    host = Host(announce_instance_list=False)
    host.core.password = "SOMETHINGELSE"
    assert host.join()[-1].startswith(b"EVENT 24 ")
    assert not host.core.joined and host.core.join_attempts == 1


@MODELS
def test_the_session_expires_on_the_meters_clock_and_reauthenticates(model):
    lifetime = timedelta(hours=1)
    host = Host(model, session_lifetime=lifetime, announce_instance_list=False)
    host.join()
    assert host.wait(3600) == []  # real time does not age a PANA session
    host.clock.advance(lifetime)  # past a half hour too: the meter's INF comes as well
    events = [line for line in host.wait(0) if line.startswith(b"EVENT")]
    assert events == [f"EVENT 29 {ip(host.core.meter_ip)}{side(model)}".encode()]
    assert host.core.state == "reauthenticating"
    # While it re-authenticates a frame is refused, and the answer comes only later.
    assert host.send(sendto(host, get_e7()))[-2].endswith(b" 01")
    assert host.wait(host.core.reauth_delay_s)[0].startswith(b"EVENT 25 ")
    assert (host.core.expiries, host.core.reauths, host.core.frames_refused) == (1, 1, 1)


@MODELS
def test_a_frame_is_answered_after_the_latency_as_erxudp(model):
    host = Host(model, announce_instance_list=False, pana_noise=False)
    host.join()
    lines = host.send(sendto(host, get_e7()))
    assert lines[-2].endswith(b" 00") and lines[-1] == b"OK"
    assert host.wait(host.core.answer_latency_s / 2) == []
    (line,) = host.wait(host.core.answer_latency_s / 2)
    fields = line.split(b" ")
    assert fields[0] == b"ERXUDP" and len(fields) == (9 if model.has_side else 8) + 1
    assert host.core.frames_sent == 1 and host.core.frames_received == 1


def test_reset_cancels_the_stack_but_not_frames_on_the_radio():
    host = Host(announce_instance_list=False)
    host.join()
    host.send(sendto(host, get_e7()))
    host.send("SKRESET")
    assert host.core.next_deadline() is not None  # the meter's answer is still in the air
    assert host.wait(1.0) == []  # ... and lost: no session to decrypt it with
    assert host.core.state == "idle" and host.core.frames_received == 0


def test_silent_firmware_hears_nothing_and_says_nothing():
    host = Host(faults=DongleFaults(silent=True))
    assert host.send("SKRESET") == []
    host.core.faults.silent = False
    assert host.send("SKVER")[-1] == b"OK"
    assert host.core.commands == 1


@MODELS
def test_everything_the_core_prints_parses_in_its_dialect(model):
    host = Host(model)
    out = host.send("SKVER") + host.send("SKINFO") + host.join()
    host.send(sendto(host, get_e7()))
    out += host.wait(1.0)
    dialect = Dialect.BP35C2 if model.has_side else Dialect.BP35A1
    parser = SkstackParser(dialect)
    items = parser.feed(b"".join(line + b"\r\n" for line in out)) + parser.flush()
    assert items and not [i for i in items if type(i).__name__ == "Garbled"]


# -- fuzz: whatever the host writes, an answer and never an exception ------------------------

WORDS = st.sampled_from(
    (
        *("SKVER", "SKAPPVER", "SKINFO", "SKRESET", "SKSREG", "SKSETRBID", "SKSETPWD"),
        *("SKLL64", "SKSCAN", "SKJOIN", "SKTERM", "ROPT", "WOPT", "SKSAVE", "SKLOAD"),
        *("SKERASE", "SKXYZ"),
    )
)
ARG = st.one_of(
    st.text("0123456789ABCDEFabcdefS:", max_size=40),
    st.sampled_from(["S2", "S3", "SFE", "SA2", "S1", "21", "FFFFFFFF", "0", "1", "FE80::1"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12),
)
LINE = st.builds(lambda w, a: " ".join([w, *a]), WORDS, st.lists(ARG, max_size=5))


@MODELS
@given(lines=st.lists(LINE, min_size=1, max_size=8))
def test_every_command_line_gets_an_answer(model, lines):
    host = Host(model)
    for text in lines:
        out = host.send(text)
        assert out and out[0] == text.encode("ascii")  # echoed, then answered
        assert ANSWER_END.match(out[-1]), out
        host.wait(1.0)  # scans and joins started by the line run to their end


@MODELS
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=6))
def test_arbitrary_bytes_in_any_chunks_never_raise(model, data, cuts):
    host = Host(model)
    host.join()
    points = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for a, b in itertools.pairwise(points):
        host.core.receive_data(data[a:b], host.now)
        host.wait(0.05)
    host.core.receive_data(b"\r\n", host.now)
    host.wait(5.0)


@MODELS
@given(payload=st.binary(min_size=1, max_size=200))
def test_any_payload_sent_to_the_meter_is_taken(model, payload):
    host = Host(model, announce_instance_list=False)
    host.join()
    lines = host.send(sendto(host, payload))
    assert lines[-1] == b"OK" and lines[-2].endswith(b" 00")
    host.wait(1.0)
