"""The durable queue: survives kill -9, acks remove exactly what was sent, 30-minute
values are never dropped, instant samples are thinned by the stated policy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from kenshin.gateway.queue import DurableQueue

WRITER = """
import sys
from kenshin.gateway.queue import DurableQueue
q = DurableQueue(sys.argv[1])
for i in range(1_000_000):
    q.put_instant("m1", 1_700_000_000 + i, i, 10, None)
    if i % 3 == 0:
        q.put_fixed("m1", 1_700_000_000 + 1800 * i, 0, i)
    print(i, flush=True)
"""


def test_kill_9_loses_nothing_that_was_queued(tmp_path):
    path = tmp_path / "queue.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline = time.monotonic() + 30
    last = -1
    while last < 300 and time.monotonic() < deadline:
        last = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # What it confirmed while we were not reading (the pipe holds it): confirmed too.
    last = max([last, *(int(line) for line in proc.stdout.read().split())])
    queue = DurableQueue(path)
    pending = queue.peek(max_instant=1_000_000, max_fixed=1_000_000)
    powers = [row.power_w for row in pending.instant]
    assert powers[: last + 1] == list(range(last + 1))  # every confirmed put, in order
    assert len(powers) <= last + 2  # at most the one in flight when killed
    fixed = {row.raw for row in pending.fixed}
    assert {i for i in range(last + 1) if i % 3 == 0} <= fixed


def test_ack_removes_exactly_what_was_sent(tmp_path):
    queue = DurableQueue(tmp_path / "q.db")
    for i in range(10):
        queue.put_instant("m1", i, i)
    first = queue.peek(max_instant=4)
    queue.put_instant("m1", 99, 99)  # arrives while the batch is in flight
    queue.ack(first)
    assert [r.power_w for r in queue.peek().instant] == [4, 5, 6, 7, 8, 9, 99]
    assert queue.depth() == {"instant": 7, "fixed": 0}


def test_thirty_minute_values_are_idempotent_and_remembered(tmp_path):
    queue = DurableQueue(tmp_path / "q.db")
    assert queue.put_fixed("m1", 1800, 0, 5)
    assert not queue.put_fixed("m1", 1800, 0, 5)  # the same slot twice: one row
    queue.put_fixed("m1", 3600, 0, 6, refill=True)
    queue.ack(queue.peek())
    assert queue.depth()["fixed"] == 0
    assert queue.last_fixed_slot("m1") == 3600  # survives the ack: the refill cursor
    reopened = DurableQueue(tmp_path / "q.db")
    assert reopened.last_fixed_slot("m1") == 3600 and reopened.last_fixed_slot("m2") is None


@pytest.mark.slow  # fills a queue to its limit
def test_a_full_queue_thins_instant_samples_and_never_fixed_values(tmp_path):
    queue = DurableQueue(tmp_path / "q.db", max_instant=100)
    for i in range(1000):
        queue.put_instant("m1", i, i)
        queue.put_fixed("m1", 1800 * i, 0, i)
    depth = queue.depth()
    assert depth["fixed"] == 1000
    assert 50 <= depth["instant"] <= 100
    assert queue.counters()["instant_thinned"] == 1000 - depth["instant"]
    kept = [r.at for r in queue.peek(max_instant=1000).instant]
    assert kept == sorted(kept) and kept[-1] == 999  # the newest are kept whole
    assert DurableQueue(tmp_path / "q.db").counters()["instant_thinned"] > 0
