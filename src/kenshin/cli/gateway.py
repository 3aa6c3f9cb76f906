"""`kenshin gateway ...`: the agent in the home, and the factory's identity maker."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="The gateway agent.")


StateDir = Annotated[
    Path | None,
    typer.Option(help="What persists across versions: trusted update metadata, health file."),
]
InitialRoot = Annotated[
    Path | None,
    typer.Option(
        help="The update channel's initial root (default: <state-dir>/initial-root.json)."
    ),
]


@app.command()
def run(
    identity: Annotated[Path, typer.Option(help="The identity file made at the factory.")] = Path(
        "/etc/kenshin/identity.json"
    ),
    queue: Annotated[Path, typer.Option(help="The durable queue (data only).")] = Path(
        "/var/lib/kenshin/queue.db"
    ),
    install_root: Annotated[
        Path | None, typer.Option(help="The install root, when run by `supervise` (updates).")
    ] = None,
    state_dir: StateDir = None,
    initial_root: InitialRoot = None,
    foreground: Annotated[
        bool, typer.Option(help="Log to the terminal (systemd runs it this way too).")
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the agent: enroll, take settings from the cloud, read the meter, send readings.
    Stops cleanly on SIGTERM or Ctrl-C; everything unsent waits in the queue."""
    from kenshin.gateway.main import run_agent, setup_logging

    setup_logging(verbose, foreground)
    code = run_agent(
        identity, queue, install_root=install_root, state_dir=state_dir, initial_root=initial_root
    )
    sys.exit(code)


@app.command()
def supervise(
    root: Annotated[Path, typer.Option(help="The install root (versions/, current).")] = Path(
        "/opt/kenshin"
    ),
    identity: Annotated[Path, typer.Option(help="The identity file made at the factory.")] = Path(
        "/etc/kenshin/identity.json"
    ),
    queue: Annotated[Path, typer.Option(help="The durable queue (data only).")] = Path(
        "/var/lib/kenshin/queue.db"
    ),
    state_dir: StateDir = None,
    initial_root: InitialRoot = None,
    deadline_s: Annotated[
        float, typer.Option(min=1, help="A new version's time to connect and read the meter.")
    ] = 600.0,
    crash_limit: Annotated[
        int, typer.Option(min=1, help="Exits in a row of a new version that roll it back.")
    ] = 3,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the agent from ROOT/current, switch to the versions it installs, and roll a
    version back by itself when it does not come up, connect and read the meter within
    --deadline-s, or exits --crash-limit times in a row (docs/updates.md)."""
    from kenshin.gateway.main import setup_logging
    from kenshin.gateway.supervisor import Supervisor, SupervisorOptions
    from kenshin.updates.watchdog import Rules

    setup_logging(verbose)
    state = state_dir or queue.parent
    agent_args = ["--identity", str(identity), "--queue", str(queue)]
    if initial_root is not None:
        agent_args += ["--initial-root", str(initial_root)]
    if verbose:
        agent_args.append("--verbose")
    options = SupervisorOptions(
        root, state, agent_args, Rules(deadline_s=deadline_s, crash_limit=crash_limit)
    )
    sys.exit(Supervisor(options).run())


@app.command()
def install(
    archive: Annotated[Path, typer.Argument(help="A release archive (kenshin release add's).")],
    version: Annotated[str, typer.Option(help="Its version.")],
    root: Annotated[Path, typer.Option(help="The install root.")] = Path("/opt/kenshin"),
) -> None:
    """Install a first version into ROOT and make it current (the factory's step; later
    versions come through the `update` command). An archive installed so is trusted as it
    is: take it from the signed repository."""
    from kenshin.updates.install import Installer, InstallError
    from kenshin.updates.names import TargetNameError

    installer = Installer(root)
    try:
        installer.unpack(version, archive)
        if installer.current_version() is None:
            installer.switch(version)
    except (InstallError, TargetNameError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{version} installed in {root}; current: {installer.current_version()}")


@app.command("make-identity")
def make_identity(
    serial: Annotated[str, typer.Option(help="The gateway's serial (1..32 of A-Z a-z 0-9 _ -).")],
    server_url: Annotated[str, typer.Option(help="Where the gateway enrolls.")],
    out: Annotated[Path, typer.Option(help="Identity file to write (mode 0600).")],
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Append the server's import row here.")
    ] = None,
    model: Annotated[str, typer.Option(help="Model name.")] = "kenshin-gw",
    update_root: Annotated[
        Path | None,
        typer.Option(
            help="The update repository's root metadata (its 1.root.json): the "
            "first root the gateway trusts for signed updates."
        ),
    ] = None,
) -> None:
    """Make one gateway identity (as a factory does) and the row the server imports."""
    import dataclasses

    from kenshin.gateway.identity import Identity, IdentityError, new_claim_code
    from kenshin.wire.enrollment import b64encode

    try:
        ident = Identity.generate(serial, server_url, model)
        if update_root is not None:
            ident = dataclasses.replace(ident, update_root=_root_metadata(update_root))
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


def _root_metadata(path: Path) -> dict:
    """The TUF root metadata in `path`, checked to be one (signed by its own keys)."""
    import json

    from kenshin.gateway.identity import IdentityError

    try:
        from tuf.api.metadata import Metadata, Root

        data = path.read_bytes()
        root = Metadata[Root].from_bytes(data)
        root.verify_delegate(Root.type, root)
        return json.loads(data)
    except ImportError:
        raise IdentityError("--update-root needs python-tuf (the gateway extra)") from None
    except Exception as err:  # unreadable, not a root, not signed by its own keys
        raise IdentityError(f"--update-root {path}: not a signed TUF root ({err})") from None
