"""Free ports on this machine: the demo, the embedded broker and the tests never fail on a
port someone else holds (a system Mosquitto on 1883, a second demo on 8080)."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# Ports handed out to be listened on later are taken below the kernel's ephemeral range:
# a port the kernel picked (bind to 0) and we let go is the very kind it next gives an
# outgoing connection, which then holds it when our server binds (seen: a RabbitMQ node's
# MQTT listener failing with eaddrinuse while other tests connected everywhere).
_LISTEN_LOW = 10_000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _free_port(host: str, kind: socket.SocketKind) -> int:
    high = _ephemeral_low() - 1
    if high > _LISTEN_LOW:
        for _ in range(200):
            port = random.randint(_LISTEN_LOW, high)
            with socket.socket(_family(host), kind) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(_family(host), kind) as sock:  # no room below: let the kernel pick
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_udp_port(host: str = "127.0.0.1") -> int:
    return _free_port(host, socket.SOCK_DGRAM)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    return _free_port(host, socket.SOCK_STREAM)


def tcp_port_or_free(host: str, preferred: int) -> int:
    """`preferred` if it can be bound on `host` now, else a free port (0: a free port)."""
    if preferred:
        with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, preferred))
            except OSError:
                pass
            else:
                return preferred
    return free_tcp_port(host)


class PortTaken(OSError):
    """A port we were told to serve on is held by another process; says which."""


def port_holder(host: str, port: int) -> str | None:
    """Who listens on TCP `port` (any address that covers `host`), as "pid N (name)" or
    "an unknown process" when the socket is found but not its owner (another user's, with
    no permission to look); None when nobody listens. Linux /proc only; elsewhere None."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    proc = Path("/proc")
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    name = (entry / "comm").read_text().strip()
                    return f"pid {entry.name} ({name})"
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return "an unknown process"


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def require_free_tcp_port(host: str, port: int, what: str) -> None:
    """Raise PortTaken naming the holder if `port` cannot be bound on `host` now."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            return
        except OSError as err:
            reason = err.strerror
    holder = port_holder(host, port) or "another process"
    raise PortTaken(f"{what} port {port} on {host} is taken by {holder} ({reason})")
