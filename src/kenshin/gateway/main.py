"""Running the agent as a process: `kenshin gateway run`, and ``python -m kenshin.gateway``,
which is how the supervisor starts it from a version's directory (a release archive holds
the gateway's packages, not the CLI: argparse here, no typer).

Stops cleanly on SIGTERM or Ctrl-C; everything unsent waits in the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from .agent import AgentOptions, GatewayAgent
from .identity import Identity, IdentityError
from .updater import UpdateSetup


def setup_logging(verbose: bool, foreground: bool = True) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if foreground else "%(message)s",
    )


def run_agent(
    identity_path: Path,
    queue: Path,
    *,
    install_root: Path | None = None,
    state_dir: Path | None = None,
    initial_root: Path | None = None,
) -> int:
    """Run until SIGTERM or SIGINT; the exit code (2: no usable identity). With an install
    root (the supervisor's), the agent takes `update` commands."""
    try:
        identity = Identity.load(identity_path)
    except IdentityError as err:
        logging.getLogger("kenshin").error("%s", err)
        return 2
    updates = None
    if install_root is not None:
        state_dir = state_dir or queue.parent
        initial_root = Path(initial_root or state_dir / "initial-root.json")
        if identity.write_update_root(initial_root):  # the factory's, with the identity
            logging.getLogger("kenshin").info("update root from the identity file")
        updates = UpdateSetup(
            Path(install_root),
            Path(state_dir),
            initial_root,
            identity.server_url.rstrip("/") + "/updates",
        )

    async def main() -> None:
        agent = GatewayAgent(identity, AgentOptions(queue_path=queue, updates=updates))
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
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kenshin.gateway", description=__doc__)
    parser.add_argument("--identity", type=Path, default=Path("/etc/kenshin/identity.json"))
    parser.add_argument("--queue", type=Path, default=Path("/var/lib/kenshin/queue.db"))
    parser.add_argument("--install-root", type=Path, default=None)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--initial-root", type=Path, default=None)
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return run_agent(
        args.identity,
        args.queue,
        install_root=args.install_root,
        state_dir=args.state_dir,
        initial_root=args.initial_root,
    )
