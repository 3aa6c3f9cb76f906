"""Free ports for the CLI and its tests (see `kenshin.ports`)."""

from kenshin.ports import free_tcp_port, free_udp_port, tcp_port_or_free

__all__ = ["free_tcp_port", "free_udp_port", "tcp_port_or_free"]
