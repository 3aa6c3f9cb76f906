"""`kenshin echonet ...`: talk ECHONET Lite over UDP."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from kenshin.echonet.frame import ECHONET_PORT

from .render import to_jsonable

app = typer.Typer(no_args_is_help=True, help="ECHONET Lite over UDP.")

Interface = Annotated[
    str,
    typer.Option(
        help="IPv4 address of the interface multicast goes out on. The default, "
        "loopback, reaches only simulators on this machine."
    ),
]


@app.command()
def discover(
    interface: Interface = "127.0.0.1",
    port: Annotated[int, typer.Option(help="ECHONET Lite port of the nodes.")] = ECHONET_PORT,
    host: Annotated[
        list[str] | None,
        typer.Option(help="Ask these hosts (unicast) instead of multicast; repeatable."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to collect answers.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find ECHONET Lite nodes and list their objects (node profile 0xD6)."""
    from kenshin.echonet.udp import EchonetClient

    async def run():
        async with EchonetClient(
            host="0.0.0.0", port=0, remote_port=port, multicast_interface=interface
        ) as client:
            return await client.discover(timeout_s=timeout, hosts=host)

    nodes = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(to_jsonable(nodes), indent=2))
    else:
        for node in nodes:
            objects = " ".join(str(eoj) for eoj in node.instances)
            typer.echo(f"{node.host}:{node.port}  {objects}")
        typer.echo(f"{len(nodes)} node(s) found", err=True)
    if not nodes:
        raise typer.Exit(1)
