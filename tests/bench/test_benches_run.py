"""The gateway benches run, in their tiny `--quick` configuration, and print their tables.

Each runs as its own process, exactly as a person runs it (`.venv/bin/python bench/...`):
the uplink bench captures packets on loopback and the footprint bench starts a child
process, neither of which belongs inside the test process. The figures of a quick run
are rough; these tests check that the benches work, not what they measure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each bench is a process of its own, 5-25 s

REPO = Path(__file__).resolve().parents[2]


# A guard against a hung bench, not a speed goal: a quick run takes a few seconds alone,
# but 25 s was once too short with eight workers on two cores.
def run_bench(name: str, *args: str, timeout_s: float = 90.0) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_FILE"}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / name), "--quick", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_uplink_bytes_prints_the_month_of_both_publishers():
    out = run_bench("uplink_bytes.py")
    assert "method:" in out
    for row in ("kenshin gateway", "naive JSON publisher", "kenshin / naive"):
        assert row in out
    for column in ("uplink", "downlink", "total", "goal"):
        assert column in out
    assert "readings batches" in out and "heartbeats" in out and "enrollment" in out
    assert "1/" in out  # the ratio


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_gateway_footprint_prints_memory_and_cpu_against_the_goals():
    out = run_bench("gateway_footprint.py")
    assert "resident memory at the end (VmRSS)" in out
    assert "share of one core at speed 1" in out
    assert "< 60 MB" in out and "< 1 %" in out
    assert " MB " in out and " %" in out


def test_forecast_prints_every_method_beside_the_goal():
    out = run_bench("forecast.py", timeout_s=60.0)
    for row in ("same slot last week", "mean of last 4 same weekdays", "kenshin", "goal:"):
        assert row in out


def test_queries_prints_each_query_beside_its_goal():
    out = run_bench("queries.py", timeout_s=120.0)
    for row in ("tenant-day 30-minute totals", "daily totals", "site list page", "60-s power",
                "month of slots as CSV"):  # fmt: skip
        assert row in out
    assert "p95 ms" in out and "< 1000 ms" in out


def test_ingest_prints_end_to_end_beside_raw_copy():
    out = run_bench("ingest.py", timeout_s=120.0)
    for row in ("end to end", "raw COPY of the same rows", "end to end / raw COPY"):
        assert row in out


def test_fleet_enrolls_restarts_the_broker_and_loses_nothing():
    out = run_bench("fleet.py", timeout_s=180.0)
    for row in ("enrolled in", "all connected again after it in", "broker RSS"):
        assert row in out
    assert "enrollments 0, lost 0" in out.splitlines()[-1]


def test_a_rollout_over_lean_gateways_halts_at_its_failing_stage_by_itself():
    """Issue 19's staged rollout, against the real server, broker and jobs: the bench
    exits 1 unless it halted at stage 2 and asked nobody past it."""
    out = run_bench("rollout.py", timeout_s=180.0)
    assert "halted at stage 2 by itself: yes; asked only stages 1-2: yes" in out


def test_brokers_measures_engines_and_a_killed_node():
    """Mosquitto and the NATS cluster (under a second to start): the RabbitMQ cluster's
    30 s of booting are paid by tests/faults (test_clusters, test_broker_facts,
    test_rabbitmq), which use the same launcher."""
    out = run_bench("brokers.py", "--brokers", "mosquitto,nats", timeout_s=240.0)
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("|")}
    assert {"mosquitto", "nats"} <= set(rows)
    for name in ("nats",):  # the cluster keeps what was queued for a session
        assert rows[name].rstrip(" |").endswith("100/100"), rows[name]


def test_wire_codec_prints_decodes_per_second_of_each_payload():
    out = run_bench("wire_codec.py")
    for row in ("half hour, 60 s", "day in one batch", "heartbeat"):
        assert row in out
    assert "decodes/s" in out and "samples/s decoded" in out and "encodes/s" in out


def test_broker_auth_prints_the_answers_a_second_beside_the_whole_application():
    out = run_bench("broker_auth.py")
    for row in ("resource (no database)", "user (reads the database)", "/livez"):
        assert row in out
    assert "answers/s" in out and "×" in out
