"""`kenshin sim ...`: simulators, so nobody needs a real meter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from datetime import datetime
from typing import Annotated

import typer

from kenshin.echonet.frame import ECHONET_PORT


async def until_stopped() -> None:
    """Until Ctrl-C or SIGTERM. Handlers are installed explicitly: a process started in the
    background by a shell inherits SIGINT ignored, and must still stop when told."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


app = typer.Typer(no_args_is_help=True, help="Simulated smart meters (and, later, dongles).")


@app.command("meter")
def meter(
    count: Annotated[int, typer.Option(help="How many meters.")] = 1,
    pv: Annotated[
        bool | None,
        typer.Option(
            "--pv/--no-pv", help="Rooftop PV on every meter (default: the seed decides, ~30 %)."
        ),
    ] = None,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 1.0,
    seed: Annotated[
        int, typer.Option(help="Seed of the first meter; the next get seed+1, ...")
    ] = 1,
    host: Annotated[
        str, typer.Option(help="Address of the first meter (loopback only).")
    ] = "127.0.1.1",
    port: Annotated[int, typer.Option(help="UDP port (0: pick a free one).")] = ECHONET_PORT,
    distinct_ports: Annotated[bool, typer.Option(help="One address, consecutive ports.")] = False,
    start: Annotated[
        str | None, typer.Option(help="Simulated start time, ISO 8601 (default now).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the meters as JSON.")] = False,
) -> None:
    """Run simulated smart meters on loopback until Ctrl-C."""
    from kenshin.sim.clock import ScaledClock
    from kenshin.sim.fleet import SimFleet

    from .ports import free_udp_port

    if port == 0:
        port = free_udp_port(host)
    started = datetime.fromisoformat(start) if start else None

    async def run() -> None:
        clock = ScaledClock(started, speed=speed)
        fleet = SimFleet(
            count, clock, seed=seed, base_host=host, port=port, distinct_ports=distinct_ports, pv=pv
        )
        async with fleet:
            rows = [
                {
                    "host": h,
                    "port": p,
                    "seed": m.config.seed,
                    "pv_kw": m.profile.pv_kw,
                    "serial": m.serial,
                }
                for (h, p), m in zip(fleet.addresses, fleet.meters, strict=True)
            ]
            if as_json:
                typer.echo(json.dumps(rows))
            else:
                for row in rows[:10]:
                    typer.echo(
                        f"meter {row['serial']} on {row['host']}:{row['port']} "
                        f"(seed {row['seed']}, PV {row['pv_kw']} kW)"
                    )
                if count > 10:
                    typer.echo(
                        f"... and {count - 10} more, up to {rows[-1]['host']}:{rows[-1]['port']}"
                    )
                typer.echo(
                    f"{count} meter(s) at speed x{speed:g}; "
                    f"read one with: kenshin meter read --host {rows[0]['host']} "
                    f"--port {rows[0]['port']}; Ctrl-C stops."
                )
            await until_stopped()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except OSError as err:
        typer.echo(
            f"error: cannot open the meters' sockets: {err}. Try --port 0 for a free port.",
            err=True,
        )
        raise typer.Exit(2) from None


DEMO_ROUTE_B_ID = "00000000000000000000000000C0FFEE"  # made up: simulators only
DEMO_PASSWORD = "KENSHINDEMO1"


@app.command("dongle")
def dongle(
    model: Annotated[str, typer.Option(help="Dongle to emulate: bp35a1 or bp35c2.")] = "bp35a1",
    meter_seed: Annotated[int, typer.Option(help="Seed of the meter behind it.")] = 1,
    pv: Annotated[bool | None, typer.Option("--pv/--no-pv", help="Rooftop PV.")] = None,
    route_b_id: Annotated[
        str, typer.Option("--id", help="The B-route ID the meter accepts.")
    ] = DEMO_ROUTE_B_ID,
    password: Annotated[str, typer.Option(help="The password it accepts.")] = DEMO_PASSWORD,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 1.0,
    session_lifetime: Annotated[
        float | None, typer.Option(help="PANA session lifetime in simulated minutes.")
    ] = None,
    link: Annotated[
        str | None, typer.Option(help="Also make this symlink to the pty (like a udev rule).")
    ] = None,
    no_sa2: Annotated[
        bool,
        typer.Option(
            "--no-sa2",
            help="BP35C2: refuse SKSREG SA2 (FAIL ER06), so ERXUDP never carries LQI.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print where to connect as JSON.")
    ] = False,
) -> None:
    """Emulate a Wi-SUN SKSTACK IP dongle on a pseudo-terminal, with a simulated meter
    behind it, until Ctrl-C. Point `kenshin broute` (or any B-route tool) at the pty."""
    from datetime import timedelta

    from kenshin.sim.clock import ScaledClock
    from kenshin.sim.dongle import DongleEmulator, DongleModel
    from kenshin.sim.meter import MeterConfig, SimulatedMeter

    try:
        dongle_model = DongleModel[model.upper()]
    except KeyError:
        raise typer.BadParameter(f"unknown model {model!r}: use bp35a1 or bp35c2") from None

    async def run() -> None:
        meter = SimulatedMeter(ScaledClock(speed=speed), MeterConfig(seed=meter_seed, pv=pv))
        lifetime = None if session_lifetime is None else timedelta(minutes=session_lifetime)
        emulator = DongleEmulator(
            meter, model=dongle_model, route_b_id=route_b_id, password=password,
            session_lifetime=lifetime, seed=meter_seed, link=link, sa2_supported=not no_sa2,
        )  # fmt: skip
        async with emulator:
            where = {
                "device": str(emulator.link or emulator.path),
                "pty": emulator.path,
                "model": dongle_model.name.lower(),
                "id": route_b_id,
                "password": password,
            }
            if as_json:
                typer.echo(json.dumps(where))
            else:
                typer.echo(f"{dongle_model.name} emulator on {where['device']} (meter seed "
                           f"{meter_seed}); read it with:")  # fmt: skip
                typer.echo(f"  kenshin broute read --device {where['device']} "
                           f"--id {route_b_id} --password {password}")  # fmt: skip
                typer.echo("Simulated only: never connect uncertified devices to a real meter.")
            await until_stopped()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
