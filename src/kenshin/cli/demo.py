"""`kenshin demo`: the whole platform in one process, nothing but simulators."""

from __future__ import annotations

import asyncio
import contextlib
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
) -> None:
    """Run the server (embedded broker, SQLite), simulated meters and gateways, and print
    where to look. Ctrl-C stops it."""
    from kenshin.demo import Demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    runner = Demo(
        workdir.resolve(),
        homes_udp=homes_udp,
        homes_wisun=homes_wisun,
        http_port=port,
        echo=typer.echo,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner.run(seconds, report_every))
