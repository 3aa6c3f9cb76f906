"""`kenshin demo`: the platform on one machine with no hardware.

For now: simulated meters on loopback and a reader that prints their live values every
few seconds. Later issues grow this into the whole platform (server, broker, gateways).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from kenshin.echonet.edt import JST


async def run_demo(meters: int, speed: float, interval_s: float, seconds: float | None) -> None:
    from kenshin.echonet.udp import EchonetClient
    from kenshin.meter import MeterError, SmartMeterSession, UdpMeterLink
    from kenshin.sim.clock import ScaledClock
    from kenshin.sim.fleet import SimFleet

    from .ports import free_udp_port

    port = free_udp_port("127.0.1.1")
    clock = ScaledClock(speed=speed)
    fleet = SimFleet(meters, clock, port=port)
    fleet.meters  # noqa: B018 - built before the banner so errors show first
    async with (
        fleet,
        EchonetClient(host="127.0.0.1", port=0, remote_port=port, timeout_s=2.0) as client,
    ):
        typer.echo(
            f"Kenshin demo: {meters} simulated smart meters on 127.0.1.1.. UDP port {port}, "
            f"simulated time x{speed:g}."
        )
        typer.echo("Simulators only: never connect uncertified devices to a real smart meter.")
        typer.echo("Press Ctrl-C to stop.\n")
        nodes = await client.discover(timeout_s=1.0)
        typer.echo(f"discovered {len(nodes)} meter(s) by multicast on loopback")
        sessions = []
        for node in nodes:
            session = SmartMeterSession(UdpMeterLink(client, node.host, node.port))
            await session.connect()
            sessions.append((node.host, session))
        notices = asyncio.create_task(_print_announcements(client))
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        try:
            while deadline is None or loop.time() < deadline:
                now = clock.now().astimezone(JST)
                typer.echo(f"-- simulated {now:%Y-%m-%d %H:%M:%S} JST")
                typer.echo(
                    f"{'meter':<12}{'power W':>9}{'R A':>7}{'T A':>7}"
                    f"{'normal kWh':>13}{'reverse kWh':>13}  last half hour"
                )
                for host, session in sessions:
                    try:
                        typer.echo(await _row(host, session))
                    except MeterError as err:
                        typer.echo(f"{host:<12} {err}")
                await asyncio.sleep(interval_s)
        finally:
            notices.cancel()


async def _row(host: str, session) -> str:
    power_w, currents = await session.instant()
    normal, reverse = await session.cumulative_energy()
    fixed = await session.fixed_time_energy()
    t_a = "-" if currents.t_da is None else f"{currents.t_da / 10:.1f}"
    rev = f"{reverse.wh / 1000:13.1f}" if reverse else f"{'-':>13}"
    return (
        f"{host:<12}{power_w:>9}{currents.r_da / 10:>7.1f}{t_a:>7}"
        f"{normal.wh / 1000:13.1f}{rev}  {fixed.at:%H:%M}"
    )


async def _print_announcements(client) -> None:
    async for note in client.notifications():
        fixed = note.values.get(0xEA)
        if fixed is not None:
            typer.echo(
                f"   INF from {note.source[0]}: half-hour value at {fixed.at:%H:%M} "
                f"= {fixed.raw} counts"
            )


def demo(
    meters: Annotated[int, typer.Option(help="How many simulated meters.")] = 4,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 60.0,
    interval: Annotated[float, typer.Option(help="Seconds between printed readings.")] = 3.0,
    seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Run simulated meters and print their live readings."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(meters, speed, interval, seconds))
