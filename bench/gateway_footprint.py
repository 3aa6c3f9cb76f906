"""The gateway agent's footprint: `.venv/bin/python bench/gateway_footprint.py`.

Resident memory and CPU time of one gateway agent at the default policy, reading one
simulated meter and sending to the real server (HTTPS enrollment, MQTT over TLS through a
TLS front door, all on loopback). The agent runs in a child process of its own (this file
with --child: it builds `GatewayAgent` as `kenshin gateway run` does, with a simulated
clock, and imports nothing of the server), so nothing of the server, broker or simulated
meter in this process is counted. Goal: under 60 MB resident, under 1 % of one core.

Memory: VmRSS and VmHWM (peak) from the child's /proc/self/status.
CPU: user + system from getrusage(RUSAGE_SELF) in the child, all threads, sampled on
SIGUSR1. The simulated clock runs in two planned phases, on which this process and the
child agree (CLOCK_MONOTONIC is machine-wide):

  A. busy, at 1,200x: N simulated hours of reads and batches pass in N x 3 s;
  B. idle, at 1x: a stretch between two instant reads, where only the agent's real-time
     timers run (the fixed-value watcher, MQTT keep-alive housekeeping).

CPU = a x real seconds + b x simulated hours, so B gives `a` and A then gives `b`; at
speed 1 an hour costs a x 3,600 + b CPU seconds, and the share of one core is that / 3,600.

    --quick    a tiny run (1 simulated hour, a few seconds): the smoke test's
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import resource
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._platform import PhasedClock

GATEWAY_ID = "b827eb4f21c9"
METER_HOST = "127.0.1.1"
GOAL_RSS_BYTES = 60_000_000
BUSY_SPEED = 1200.0
LEAD = timedelta(minutes=27)  # the clock starts this long before the first half hour


@dataclass(frozen=True)
class Plan:
    busy_hours: float  # simulated, phase A
    idle_s: float  # real, phase B (at most 50: between two instant reads)


FULL = Plan(busy_hours=16, idle_s=40)
QUICK = Plan(busy_hours=1, idle_s=2)


# -- the child: one agent ----------------------------------------------------------------------


def usage() -> dict[str, Any]:
    """This process's CPU seconds (all threads) and memory, from getrusage and /proc."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    status = Path("/proc/self/status").read_text()

    def kb(name: str) -> int:
        found = re.search(rf"^{name}:\s+(\d+) kB", status, re.MULTILINE)
        return int(found.group(1)) if found else 0

    return {
        "t": time.monotonic(),
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "rss_kb": kb("VmRSS"),
        "hwm_kb": kb("VmHWM"),
        "threads": int(re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE).group(1)),
    }


def emit(kind: str, **values: Any) -> None:
    sys.stdout.write(json.dumps({"kind": kind, **values}) + "\n")
    sys.stdout.flush()


def child(identity_path: Path, queue_path: Path) -> int:
    """The agent, as `kenshin gateway run` builds it, on the clock the parent plans."""
    from kenshin.gateway.agent import AgentOptions, GatewayAgent
    from kenshin.gateway.identity import Identity

    logging.basicConfig(level=logging.WARNING, format="child %(levelname)s %(name)s: %(message)s")
    emit("imported", **usage())
    plan = json.loads(sys.stdin.readline())
    clock = PhasedClock(
        datetime.fromisoformat(plan["start"]),
        [tuple(phase) for phase in plan["phases"]],
        t0=plan["t0"],
    )

    async def main() -> None:
        agent = GatewayAgent(
            Identity.load(identity_path), AgentOptions(queue_path=queue_path), clock=clock
        )
        task = asyncio.create_task(agent.run_forever())
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, lambda: emit("sample", **usage()))
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        while not (agent.meter is not None and agent.state.settings is not None):
            if task.done():
                break
            await asyncio.sleep(0.01)
        emit("ready", at=clock.now().isoformat(), **usage())
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            agent.queue.close()

    asyncio.run(main())
    return 0


# -- the parent: the platform, the meter, the measurement --------------------------------------


@dataclass
class Sample:
    t: float
    cpu_s: float
    rss_kb: int
    hwm_kb: int
    threads: int


@dataclass
class Footprint:
    plan: Plan
    imported: Sample
    busy: tuple[Sample, Sample]
    idle: tuple[Sample, Sample]
    ready_late: bool
    instant_reads: int
    batches: int
    cli_import_kb: int


class Child:
    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process

    async def line(self, kind: str, timeout_s: float = 30.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
            if not raw:
                raise RuntimeError(f"the agent process ended (waiting for {kind!r})")
            message = json.loads(raw)
            if message.get("kind") == kind:
                return message

    async def sample(self) -> Sample:
        self.process.send_signal(signal.SIGUSR1)
        return as_sample(await self.line("sample"))


def as_sample(message: dict[str, Any]) -> Sample:
    return Sample(
        message["t"], message["cpu_s"], message["rss_kb"], message["hwm_kb"], message["threads"]
    )


async def cli_import_rss_kb() -> int:
    """VmRSS of a process that imports what `kenshin gateway run` imports (the CLI, Typer)."""
    code = (
        "import re, kenshin.cli, kenshin.gateway.agent, kenshin.gateway.identity\n"
        "print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    return int(out.strip() or 0)


async def measure(plan: Plan) -> Footprint:
    from bench._platform import scratch_dir

    workdir = scratch_dir("kenshin-footprint-")
    disk = scratch_dir("kenshin-footprint-queue-", memory=False)  # the agent's queue: on disk
    try:
        return await _measure(plan, workdir, disk)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(disk, ignore_errors=True)


async def _measure(plan: Plan, workdir: Path, disk: Path) -> Footprint:
    from bench._platform import (
        BrokerFront,
        Platform,
        make_tls_files,
    )
    from kenshin.cli.ports import free_udp_port
    from kenshin.sim.clock import JST
    from kenshin.sim.fleet import SimFleet
    from kenshin.sim.meter import MeterConfig

    tls = make_tls_files(workdir)
    first_slot = datetime(2026, 7, 1, 0, 0, tzinfo=JST)
    cli_import = asyncio.create_task(cli_import_rss_kb())  # done before the agent starts
    async with Platform(workdir, tls=tls) as platform:
        front = BrokerFront((platform.broker.host, platform.broker.port), tls=tls, mss=None)
        await front.start()
        platform.advertise("127.0.0.1", front.port, tls=True)
        meter_port = free_udp_port(METER_HOST)
        identity = await platform.add_gateway(GATEWAY_ID, (METER_HOST, meter_port))
        identity.save(workdir / "identity.json")
        await cli_import

        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "--identity",
            str(workdir / "identity.json"),
            "--queue",
            str(disk / "queue.db"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "SSL_CERT_FILE": str(tls.ca)},  # it trusts our root CA
        )
        agent = Child(process)
        fleet = None
        try:
            imported = as_sample(await agent.line("imported"))
            # Phase A from LEAD before the first half hour to 5 s past the end of the busy
            # window (a quarter past a half hour), then phase B at speed 1: the next instant
            # read is 55 s away, the next half hour 15 minutes.
            busy = (
                first_slot + timedelta(minutes=15),
                first_slot + timedelta(minutes=15, hours=plan.busy_hours),
            )
            switch = busy[1] + timedelta(seconds=5)
            start = first_slot - LEAD
            phase_a = (switch - start).total_seconds() / BUSY_SPEED
            clock = PhasedClock(start, [(phase_a, BUSY_SPEED), (0.0, 1.0)])
            fleet = SimFleet(
                1, clock, port=meter_port, config=MeterConfig(seed=3, pv=True), multicast=False
            )
            await fleet.start(announce=False)
            assert process.stdin is not None
            phases = [[phase_a, BUSY_SPEED], [0.0, 1.0]]
            process.stdin.write(
                (
                    json.dumps({"start": start.isoformat(), "t0": clock.t0, "phases": phases})
                    + "\n"
                ).encode()
            )
            await process.stdin.drain()
            ready = await agent.line("ready", timeout_s=60)
            ready_late = datetime.fromisoformat(ready["at"]) >= busy[0]
            await sleep_until(clock.real_at(busy[0]))
            a0 = await agent.sample()
            reads0 = fleet.requests_answered
            batches0 = platform_batches(platform)
            await sleep_until(clock.real_at(busy[1]))
            a1 = await agent.sample()
            reads1 = fleet.requests_answered
            batches1 = platform_batches(platform)
            idle_from = clock.real_at(switch) + 1.0
            await sleep_until(idle_from)
            b0 = await agent.sample()
            await sleep_until(idle_from + plan.idle_s)
            b1 = await agent.sample()
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            if fleet is not None:
                fleet.close()
            await front.close()
    return Footprint(
        plan,
        imported,
        (a0, a1),
        (b0, b1),
        ready_late,
        reads1 - reads0,
        batches1 - batches0,
        await cli_import,
    )


def platform_batches(platform: Any) -> int:
    service = platform.app.state.device_service
    return int(service.counters.get("readings", 0))


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


# -- the table ---------------------------------------------------------------------------------


def mb(kb: int) -> str:
    return f"{kb * 1024 / 1e6:.1f} MB"


def report(f: Footprint) -> int:
    from bench.wire_size import print_table

    busy_real = f.busy[1].t - f.busy[0].t
    busy_cpu = f.busy[1].cpu_s - f.busy[0].cpu_s
    idle_real = f.idle[1].t - f.idle[0].t
    idle_cpu = f.idle[1].cpu_s - f.idle[0].cpu_s
    a = idle_cpu / idle_real  # CPU s per real s, timers only
    b = max(0.0, busy_cpu - a * busy_real) / f.plan.busy_hours  # CPU s per simulated hour
    per_hour = a * 3600 + b
    share = per_hour / 3600
    rss = max(f.busy[1].rss_kb, f.idle[1].rss_kb)
    peak = max(f.busy[1].hwm_kb, f.idle[1].hwm_kb)

    def ok(good: bool) -> str:
        return "ok" if good else "MISSED"

    print(
        "Gateway agent footprint at the default policy (60 s instant power and currents, "
        "30-minute energy, a batch each half hour), one simulated meter, MQTT over TLS"
    )
    print(
        "method: the agent alone in a child process; memory from its /proc/self/status, "
        "CPU (user+sys, all threads) from its getrusage"
    )
    print(
        f"busy phase: {f.plan.busy_hours:g} simulated hours at {BUSY_SPEED:,.0f}x "
        f"({busy_real:.1f} s real): {f.instant_reads} meter requests answered, "
        f"{f.batches} messages ingested; idle phase: {idle_real:.1f} s at 1x, no read due"
    )
    print()
    goal_mb = f"< {GOAL_RSS_BYTES / 1e6:.0f} MB"
    print_table(
        [
            ("what", "figure", "goal", ""),
            (
                "resident memory at the end (VmRSS)",
                mb(rss),
                goal_mb,
                ok(rss * 1024 < GOAL_RSS_BYTES),
            ),
            ("resident memory, peak (VmHWM)", mb(peak), goal_mb, ok(peak * 1024 < GOAL_RSS_BYTES)),
            ("  Python and the agent's imports alone", mb(f.imported.rss_kb), "", ""),
            ("  the same with the CLI's (kenshin gateway run)", mb(f.cli_import_kb), "", ""),
            ("threads", str(f.idle[1].threads), "", ""),
            ("CPU in the busy phase (s)", f"{busy_cpu:.3f}", "", ""),
            ("CPU in the idle phase (s)", f"{idle_cpu:.3f}", "", ""),
            ("CPU a simulated hour of reads and batches (s)", f"{b:.3f}", "", ""),
            ("CPU a real hour of timers at rest (s)", f"{a * 3600:.3f}", "", ""),
            ("CPU an hour at speed 1 (s)", f"{per_hour:.3f}", "", ""),
            ("share of one core at speed 1", f"{share * 100:.3f} %", "< 1 %", ok(share < 0.01)),
        ]
    )
    print(
        "  an hour at speed 1 = CPU a real second at rest x 3,600 + CPU a simulated hour, "
        "the busy phase's CPU less its real-time share; heartbeats (2 an hour, real time) "
        "fall in neither phase"
    )
    if f.ready_late:
        print("note: the agent was ready only after the busy window began; start-up is in it")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--identity", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--queue", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.identity, args.queue)
    from bench._platform import quiet_logging

    quiet_logging()
    return report(asyncio.run(measure(QUICK if args.quick else FULL)))


if __name__ == "__main__":
    sys.exit(main())
