"""`kenshin sim ...`: simulators, so nobody needs a real meter."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated

import typer

from kenshin.echonet.frame import ECHONET_PORT

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
            await asyncio.Event().wait()

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
