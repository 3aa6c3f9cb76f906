"""`kenshin demo`: the whole platform in one process, nothing but simulators."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer


def demo(
    homes_udp: Annotated[int, typer.Option(help="Homes whose meter is on ECHONET Lite/UDP.")] = 2,
    homes_wisun: Annotated[
        int, typer.Option(help="Homes whose meter is behind an emulated Wi-SUN dongle.")
    ] = 2,
    port: Annotated[int, typer.Option(help="HTTP port to try first (a free one if taken).")] = 8080,
    workdir: Annotated[
        Path, typer.Option("--dir", help="Where the demo keeps its database and queues.")
    ] = Path(".kenshin-demo"),
    seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    report_every: Annotated[float, typer.Option(help="Seconds between status lines.")] = 10.0,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start over, not with the folder's earlier data.")
    ] = False,
) -> None:
    """Run the server (embedded broker, SQLite), simulated meters and gateways, and print
    where to look. A second run in the same folder goes on with its data. Ctrl-C stops it."""
    # Ctrl-C at any moment, even while the modules load: one line and exit 0. asyncio.run
    # turns the first into the main task's cancellation, so the demo stops what it began.
    try:
        from kenshin.demo import Demo

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        runner = Demo(
            workdir.resolve(),
            homes_udp=homes_udp,
            homes_wisun=homes_wisun,
            http_port=port,
            fresh=fresh,
            echo=typer.echo,
        )
        asyncio.run(runner.run(seconds, report_every))
    except KeyboardInterrupt:
        typer.echo("Kenshin demo stopped (Ctrl-C).")
