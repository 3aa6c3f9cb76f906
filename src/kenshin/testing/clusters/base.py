"""What the broker clusters share: nodes in process groups of their own, waiting on them,
their memory. See the package's docstring for the whole."""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
RABBITMQ_PLUGINS_DIR = Path("/usr/lib/rabbitmq/lib/rabbitmq_server-3.10.8/plugins")
NATS_SERVER = "nats-server"
HOST = "127.0.0.1"


class ClusterError(RuntimeError):
    """A node did not start, or a cluster command failed; the message ends with the log."""


def raise_open_files_limit() -> int:
    """The soft limit of open files raised to the hard one (children inherit it)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def log_tail_of(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0


def _group_pids(pgid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every live process in a process group.

    A multithreaded process (beam.smp, nats-server) killed with SIGKILL shows its main
    thread as a zombie while its other threads still exit, holding the sockets: it counts
    as live until it has no other thread left."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) != pgid:
            continue
        if fields[0] == "Z":
            try:
                if len(os.listdir(entry / "task")) <= 1:
                    continue
            except OSError:
                continue
        found.append((int(entry.name), name))
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of a process, KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Node:
    """One broker process in a session (process group) of its own."""

    def __init__(self, index: int, directory: Path) -> None:
        self.index = index
        self.dir = directory
        self.process: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.dir / "console.log"

    def spawn(self, argv: Sequence[str], env: dict[str, str]) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                list(argv),
                env=env,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole process group; returns once the leader is reaped."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        # children still dying (beam.smp after the script): wait until the group is empty
        deadline = time.monotonic() + 10
        while _group_pids(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.process = None

    def terminate(self, grace_s: float) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(grace_s)
        self.kill()

    def pids(self) -> list[tuple[int, str]]:
        return _group_pids(self.process.pid) if self.process is not None else []


class Cluster:
    """What both clusters share: nodes, ports, context manager."""

    kind = "cluster"
    server_process_name = ""

    def __init__(self, base_dir: str | os.PathLike, nodes: int) -> None:
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.tag = secrets.token_hex(3)  # node names unique among parallel clusters
        self.nodes: list[Node] = []
        self.mqtt_ports: list[int] = []
        self.verbose = False

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _say(self, text: str) -> None:
        if self.verbose:
            print(f"[{self.kind}] {text}", flush=True)

    def _wait_for(self, node: Node, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not node.alive:
                raise ClusterError(
                    f"{self.kind} node {node.index + 1} exited before {what}:\n"
                    f"{self.log_tail(node.index)}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise ClusterError(
            f"{self.kind} node {node.index + 1}: not {what} after {timeout_s:.0f} s:\n"
            f"{self.log_tail(node.index)}"
        )

    def log_tail(self, i: int, lines: int = 40) -> str:
        return log_tail_of(self.nodes[i].log, lines)

    def kill_node(self, i: int) -> None:
        """SIGKILL to node i (0-based) and everything it started."""
        self.nodes[i].kill()

    def start_node(self, i: int) -> None:
        """Start node i again (after :meth:`kill_node`); it rejoins from its own data."""
        if self.nodes[i].alive:
            raise ClusterError(f"{self.kind} node {i + 1} is running")
        self._launch(i)
        try:
            self._await_restarted(i)
        except BaseException:
            self.nodes[i].kill()
            raise

    def _launch(self, i: int) -> None:
        raise NotImplementedError

    def _await_restarted(self, i: int) -> None:
        raise NotImplementedError

    def alive(self, i: int) -> bool:
        return self.nodes[i].alive

    def server_pids(self) -> list[int]:
        """The broker processes proper (beam.smp, nats-server) of the live nodes: for RSS."""
        return [
            pid
            for node in self.nodes
            for pid, name in node.pids()
            if name.startswith(self.server_process_name)
        ]

    def rss_kib(self) -> int:
        """Resident memory of all live nodes' broker processes, KiB."""
        return sum(rss_kib(pid) for pid in self.server_pids())

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.nodes) or 1) as pool:
            list(pool.map(lambda n: n.terminate(15), self.nodes))
