"""An external MQTT broker's address as the settings name it: ``mqtt[s]://user:pass@host:port``
for the broker, ``host:port,host:port`` for a cluster's other nodes (settings.py)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["BrokerEndpoint", "parse_broker", "parse_nodes"]


@dataclass(frozen=True)
class BrokerEndpoint:
    """An external MQTT broker, parsed from ``mqtt://user:pass@host:port``."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    def __repr__(self) -> str:  # never print the password
        auth = f"{self.username}:***@" if self.username else ""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"BrokerEndpoint({scheme}://{auth}{self.host}:{self.port})"


def parse_nodes(value: str | None) -> list[tuple[str, int]]:
    """'host:port,host:port' as (host, port) pairs; ValueError for an item that is not."""
    found = []
    for item in filter(None, (part.strip() for part in (value or "").split(","))):
        host, _, port = item.rpartition(":")
        if not (host and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{item!r} is not host:port")
        found.append((host.strip("[]"), int(port)))
    return found


def parse_broker(value: str) -> BrokerEndpoint:
    """`broker` as an endpoint; ValueError saying what is wrong with it."""
    parts = urlsplit(value)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError("broker must be 'embedded' or a URL mqtt://user:pass@host:port")
    if not parts.hostname:
        raise ValueError("broker URL has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("broker URL takes no path, query or fragment")
    try:
        port = parts.port
    except ValueError as err:
        raise ValueError(f"broker URL: {err}") from None
    tls = parts.scheme == "mqtts"
    return BrokerEndpoint(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=tls,
    )
