"""`kenshin gateway ...`: the agent in the home, and the factory's identity maker."""

from __future__ import annotations

import asyncio
import csv
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="The gateway agent.")


@app.command()
def run(
    identity: Annotated[Path, typer.Option(help="The identity file made at the factory.")] = Path(
        "/etc/kenshin/identity.json"
    ),
    queue: Annotated[Path, typer.Option(help="The durable queue (data only).")] = Path(
        "/var/lib/kenshin/queue.db"
    ),
    foreground: Annotated[
        bool, typer.Option(help="Log to the terminal (systemd runs it this way too).")
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the agent: enroll, take settings from the cloud, read the meter, send readings.
    Stops cleanly on SIGTERM or Ctrl-C; everything unsent waits in the queue."""
    from kenshin.gateway.agent import AgentOptions, GatewayAgent
    from kenshin.gateway.identity import Identity, IdentityError

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if foreground else "%(message)s",
    )
    try:
        ident = Identity.load(identity)
    except IdentityError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None

    async def main() -> None:
        agent = GatewayAgent(ident, AgentOptions(queue_path=queue))
        task = asyncio.create_task(agent.run_forever())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            logging.getLogger("kenshin").info("stopped; unsent readings wait in %s", queue)
        finally:
            agent.queue.close()

    asyncio.run(main())
    sys.exit(0)


@app.command("make-identity")
def make_identity(
    serial: Annotated[str, typer.Option(help="The gateway's serial (1..32 of A-Z a-z 0-9 _ -).")],
    server_url: Annotated[str, typer.Option(help="Where the gateway enrolls.")],
    out: Annotated[Path, typer.Option(help="Identity file to write (mode 0600).")],
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Append the server's import row here.")
    ] = None,
    model: Annotated[str, typer.Option(help="Model name.")] = "kenshin-gw",
) -> None:
    """Make one gateway identity (as a factory does) and the row the server imports."""
    from kenshin.gateway.identity import Identity, IdentityError, new_claim_code
    from kenshin.wire.enrollment import b64encode

    try:
        ident = Identity.generate(serial, server_url, model)
    except IdentityError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if out.exists():
        typer.echo(f"error: {out} exists; an identity is never overwritten", err=True)
        raise typer.Exit(2)
    ident.save(out)
    code = new_claim_code()
    row = {
        "serial": serial,
        "model": model,
        "public_key": b64encode(ident.public_key),
        "claim_code": code,
    }
    if csv_file is not None:
        new = not csv_file.exists()
        with csv_file.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
    typer.echo(f"identity {out}; claim code (print it on the box): {code}")
