"""ECHONET Lite codec benchmark: `.venv/bin/python bench/echonet_codec.py`.

(a) frames/s of `kenshin.echonet.decode_frame` against pychonet's `decodeEchonetMsg` on the
    same realistic mix of frames (goal: ratio >= 1.0, with Kenshin checking every length);
(b) frames/s of Kenshin's full typed decode of a smart-meter Get_Res carrying E7, E8, EA
    and E0 (`decode_frame` + `decode_property` for each; goal >= 200,000/s);
then whatever `fleet_rows()` returns (the fleet simulator's figures).

Each figure is the best of 3 timed runs of about half a second each (`time.perf_counter`).
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from kenshin.echonet import (
    CONTROLLER,
    ESV,
    JST,
    NODE_PROFILE,
    SMART_METER,
    Frame,
    Property,
    decode_frame,
    decode_property,
    encode_frame,
    encode_property,
)
from kenshin.echonet import edt as e

Row = tuple[str, str, str]  # (what, figure, goal and verdict)

RUN_S = 0.5  # one timed run
RUNS = 3  # best of
DECODE_GOAL_RATIO = 1.0
TYPED_GOAL_PER_S = 200_000


def _meter(epc: int, value: object) -> Property:
    return Property(epc, encode_property(0x0288, epc, value))


def meter_get_res() -> bytes:
    """What a gateway polls every minute: power, currents, the fixed-time value, energy."""
    at = datetime(2024, 6, 1, 12, 30, tzinfo=JST)
    return encode_frame(
        Frame(0x0123, SMART_METER, CONTROLLER, ESV.GET_RES, (
            _meter(0xE7, 1_234),
            _meter(0xE8, e.Currents(123, None)),
            _meter(0xEA, e.FixedTimeEnergy(at, 4_567_890)),
            _meter(0xE0, 4_567_912),
        ))
    )  # fmt: skip


def mix() -> list[bytes]:
    """A realistic mix, one of each: meter Get_Res, INF of EA at the half hour, the node
    profile's D5 start-up announcement, and a history E2 answer (the Get_Res that follows
    the SetC of E5 choosing the day; docs/protocol.md §4)."""
    at = datetime(2024, 6, 1, 13, 0, tzinfo=JST)
    history = e.History1(1, tuple(range(4_500_000, 4_500_040)) + (None,) * 8)  # today: 20:00
    return [
        meter_get_res(),
        encode_frame(Frame(0x0001, SMART_METER, NODE_PROFILE, ESV.INF,
                           (_meter(0xEA, e.FixedTimeEnergy(at, 4_567_950)),))),
        encode_frame(Frame(0x0002, NODE_PROFILE, NODE_PROFILE, ESV.INF,
                           (Property(0xD5, bytes.fromhex("01028801")),))),
        encode_frame(Frame(0x0124, SMART_METER, CONTROLLER, ESV.GET_RES,
                           (_meter(0xE2, history),))),
    ]  # fmt: skip


def typed_decode(data: bytes) -> list[object]:
    """What a gateway does with an answer: the frame, then the typed value of every
    property that carries one (PDC 0 is a refusal or an acknowledgement). The values are
    in the Get list of a SetGet answer, in the only list otherwise."""
    frame = decode_frame(data)
    class_code = frame.seoj.class_code
    return [
        decode_property(class_code, epc, edt) for epc, edt in frame.props_get or frame.props if edt
    ]


def frames_per_second(decode: Callable[[bytes], object], frames: Sequence[bytes]) -> float:
    """Best of RUNS runs of about RUN_S each, over `frames` cycled."""
    batch = list(frames) * max(1, 1000 // len(frames))
    loops = 1
    while True:  # calibrate: how many passes over the batch make one run
        started = time.perf_counter()
        for _ in range(loops):
            for data in batch:
                decode(data)
        elapsed = time.perf_counter() - started
        if elapsed >= RUN_S / 10:
            break
        loops *= 2
    loops = max(1, round(loops * RUN_S / elapsed))
    best = float("inf")
    for _ in range(RUNS):
        started = time.perf_counter()
        for _ in range(loops):
            for data in batch:
                decode(data)
        best = min(best, time.perf_counter() - started)
    return loops * len(batch) / best


def check_same_frames(frames: Sequence[bytes]) -> None:
    """Both decoders must read the same properties out of the same bytes."""
    from pychonet.lib.functions import decodeEchonetMsg

    for data in frames:
        ours = decode_frame(data)
        theirs = decodeEchonetMsg(data)
        same = (ours.tid, int(ours.esv), [(p.epc, p.edt) for p in ours.props]) == (
            theirs["TID"], theirs["ESV"], [(o["EPC"], bytes(o["EDT"])) for o in theirs["OPC"]]
        )  # fmt: skip
        if not same:
            raise SystemExit(f"the decoders disagree on {data.hex()}")


FLEET_METERS = 1_000
FLEET_RUN_S = 3.0


def fleet_rows() -> list[Row]:
    """(c) 1,000 simulated meters on 127.0.1.x answering Gets of E7+E8 over real UDP,
    asked by one client that keeps one request in flight per meter (as meters demand).
    Client and meters share this process and its one event loop, so the figure is a floor
    for what the simulator alone can answer."""
    import asyncio
    import socket

    from kenshin.echonet.udp import EchonetClient
    from kenshin.sim.clock import ScaledClock
    from kenshin.sim.fleet import SimFleet

    async def measure() -> tuple[int, float]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.1.1", 0))
            port = probe.getsockname()[1]
        fleet = SimFleet(FLEET_METERS, ScaledClock(), port=port, multicast=False)
        client = EchonetClient(host="127.0.0.1", port=0, remote_port=port, timeout_s=2.0)
        async with fleet, client:
            loop = asyncio.get_running_loop()
            stop = loop.time() + FLEET_RUN_S

            async def poll(host: str, meter_port: int) -> None:
                while loop.time() < stop:
                    await client.get(host, SMART_METER, [0xE7, 0xE8], port=meter_port)

            await asyncio.gather(*(poll(h, p) for h, p in fleet.addresses[:10]))  # warm up
            stop = loop.time() + FLEET_RUN_S
            before, started = fleet.requests_answered, loop.time()
            await asyncio.gather(*(poll(h, p) for h, p in fleet.addresses))
            return fleet.requests_answered - before, loop.time() - started

    answered, elapsed = asyncio.run(measure())
    return [
        (f"(c) fleet simulator, {FLEET_METERS:,} meters, Get E7+E8",
         f"{answered / elapsed:,.0f} answers/s", "client in the same process (a floor)"),
    ]  # fmt: skip


def codec_rows() -> list[Row]:
    from pychonet.lib.functions import decodeEchonetMsg

    frames = mix()
    check_same_frames(frames)
    ours = frames_per_second(decode_frame, frames)
    theirs = frames_per_second(decodeEchonetMsg, frames)
    ratio = ours / theirs
    typed = frames_per_second(typed_decode, [meter_get_res()])
    typed_mix = frames_per_second(typed_decode, frames)

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    return [
        ("(a) kenshin decode_frame, mix of 4", f"{ours:,.0f} frames/s", ""),
        ("(a) pychonet decodeEchonetMsg, same mix", f"{theirs:,.0f} frames/s", ""),
        ("(a) ratio kenshin / pychonet", f"{ratio:.2f}",
         f">= {DECODE_GOAL_RATIO:.1f}: {verdict(ratio >= DECODE_GOAL_RATIO)}"),
        ("(b) kenshin typed decode, Get_Res E7 E8 EA E0", f"{typed:,.0f} frames/s",
         f">= {TYPED_GOAL_PER_S:,}/s: {verdict(typed >= TYPED_GOAL_PER_S)}"),
        ("    kenshin typed decode, mix of 4", f"{typed_mix:,.0f} frames/s", "(for reference)"),
    ]  # fmt: skip


def print_table(rows: Sequence[Row]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for what, figure, goal in rows:
        print(f"{what:<{widths[0]}}  {figure:>{widths[1]}}  {goal}".rstrip())


def main() -> int:
    print(
        f"ECHONET Lite codec, Python {platform.python_version()} on {platform.machine()}, "
        f"best of {RUNS} runs of ~{RUN_S:g} s"
    )
    header: Row = ("row", "figure", "goal")
    rows = codec_rows() + fleet_rows()
    print_table([header, *rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
