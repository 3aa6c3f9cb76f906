"""Where a webhook may point: http(s) URLs of public hosts, unless the installation says
otherwise. The platform must never become a scanner of the networks it runs in (SSRF).

The name is resolved once, every address it resolves to must be public, and the request
then goes to the address that was checked (the name kept in the Host header and as the TLS
server name), so a DNS answer that changes between the check and the connection (DNS
rebinding) cannot lead it to 127.0.0.1 or a cloud's metadata service.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Target", "UnsafeTarget", "resolve_target"]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeTarget(ValueError):
    """A URL that is not http(s), does not resolve, or leads into a private network."""


@dataclass(frozen=True)
class Target:
    """What to connect to: `url`, with `headers` and `extensions` for httpx."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv6Address):  # IPv4 carried inside IPv6
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is None and address.teredo is not None:
            inner = address.teredo[1]
        if inner is not None and not inner.is_global:
            return False
    return True


def resolve_target(url: str, *, allow_private: bool) -> Target:
    """The target of `url`, pinned to the address its host resolves to first, which must
    be public unless `allow_private`. Raises `UnsafeTarget`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise UnsafeTarget(f"not a URL: {err}") from None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise UnsafeTarget("a webhook URL is http:// or https:// with a host")
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        raise UnsafeTarget(f"{host} does not resolve: {err}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:  # all of them: a client could pick any
        if not allow_private and not _public(address):
            raise UnsafeTarget(f"{host} is {address}, not a public address")
    pinned = addresses[0]
    literal = f"[{pinned}]" if pinned.version == 6 else str(pinned)
    userinfo, _, host_port = parts.netloc.rpartition("@")
    netloc = (userinfo + "@" if userinfo else "") + literal + (f":{port}" if port else "")
    return Target(
        urlunsplit(parts._replace(netloc=netloc)),
        headers={"Host": host_port},
        extensions={"sni_hostname": host},  # TLS still checks the name's certificate
    )
