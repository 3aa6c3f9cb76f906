"""Free ports on this machine: the demo, the embedded broker and the tests never fail on a
port someone else holds (a system Mosquitto on 1883, a second demo on 8080)."""

from __future__ import annotations

import socket


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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
