"""Speed of the wire codec: `.venv/bin/python bench/wire_codec.py [--quick]`.

Decodes (and encodes) per second of `kenshin.wire.decode` / `encode` on readings batches
from the load simulator of bench/wire_size.py: the default half hour (30 samples at 60 s,
currents every fifth, one 30-minute value), a day in one batch (1,440 samples: a gateway
catching up after an outage) and one heartbeat. The ingest decodes every sample of every
batch, so decode speed is what matters; samples/s is the figure to compare between
changes of the column coding. Each figure is the best of 3 runs of about half a second.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.wire_size import DAY, House, Policy, batch_for, heartbeat, print_table
from kenshin.wire import ReadingsBatch, decode, encode

RUNS = 3


def per_second(work: Callable[[], object], run_s: float) -> float:
    """Best of RUNS runs of about `run_s` each."""
    loops = 1
    while True:  # calibrate
        started = time.perf_counter()
        for _ in range(loops):
            work()
        elapsed = time.perf_counter() - started
        if elapsed >= run_s / 10:
            break
        loops *= 2
    loops = max(1, round(loops * run_s / elapsed))
    best = float("inf")
    for _ in range(RUNS):
        started = time.perf_counter()
        for _ in range(loops):
            work()
        best = min(best, time.perf_counter() - started)
    return loops / best


def main(argv: list[str]) -> int:
    run_s = 0.05 if "--quick" in argv else 0.5
    house = House()
    start = int(DAY.timestamp()) + 12 * 3600
    rng = random.Random(1)
    cases = [
        ("half hour, 60 s, currents 5 min", batch_for(house, Policy("", 60, 1800), start, 1, rng)),
        ("day in one batch, 60 s", batch_for(house, Policy("", 60, 86_400), start, 2, rng)),
        ("heartbeat (Status)", heartbeat()),
    ]
    rows = [("payload", "bytes", "decodes/s", "samples/s decoded", "encodes/s")]
    for name, message in cases:
        payload = encode(message)
        assert decode(payload) == message
        decodes = per_second(lambda p=payload: decode(p), run_s)
        encodes = per_second(lambda m=message: encode(m), run_s)
        samples = len(message.instant) if isinstance(message, ReadingsBatch) else 0
        rows.append((
            name,
            f"{len(payload):,}",
            f"{decodes:,.0f}",
            f"{decodes * samples:,.0f}" if samples else "-",
            f"{encodes:,.0f}",
        ))  # fmt: skip
    print(f"kenshin.wire codec speed, best of {RUNS} runs of {run_s} s ({sys.version.split()[0]})")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
