"""The `kenshin` command."""

from __future__ import annotations

import typer

from . import broute, demo, echonet, gateway, meter, server, sim

app = typer.Typer(
    no_args_is_help=True,
    help="Kenshin: smart-meter B-route data from the meter to the businesses that need it.",
    add_completion=False,
)
app.add_typer(echonet.app, name="echonet")
app.add_typer(meter.app, name="meter")
app.add_typer(broute.app, name="broute")
app.add_typer(gateway.app, name="gateway")
app.add_typer(server.app, name="server")
app.add_typer(sim.app, name="sim")
app.command("demo")(demo.demo)


def main() -> None:
    app()
