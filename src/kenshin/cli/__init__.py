"""The `kenshin` command."""

from __future__ import annotations

from typing import Annotated

import typer

from . import broute, demo, echonet, gateway, meter, release, server, sim

app = typer.Typer(
    no_args_is_help=True,
    help="Kenshin: smart-meter B-route data from the meter to the businesses that need it.",
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from kenshin import __version__

        typer.echo(f"kenshin {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Kenshin: smart-meter B-route data from the meter to the businesses that need it."""


app.add_typer(echonet.app, name="echonet")
app.add_typer(meter.app, name="meter")
app.add_typer(broute.app, name="broute")
app.add_typer(gateway.app, name="gateway")
app.add_typer(server.app, name="server")
app.add_typer(sim.app, name="sim")
app.add_typer(release.app, name="release")
app.command("demo")(demo.demo)


def main() -> None:
    app()
