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

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 ranges that carry an IPv4 address in their last 32 bits: judged by that address.
_EMBEDDING = (
    ipaddress.ip_network("::ffff:0:0/96"),  # IPv4-mapped
    ipaddress.ip_network("::/96"),  # IPv4-compatible (deprecated; `[::127.0.0.1]`)
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64, well-known prefix
)
# NAT64 local-use prefix (RFC 8215): the IPv4 address sits wherever the operator's prefix
# length puts it, and the prefix names hosts of one's own network: never public.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


class UnsafeTarget(ValueError):
    """A URL that is not http(s), does not resolve, or leads into a private network."""


@dataclass(frozen=True)
class Target:
    """What to connect to: `url`, with `headers` and `extensions` for httpx."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


def _never(address: IPAddress) -> str | None:
    """Why no webhook goes to `address` even where private ones are allowed: not one host."""
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if address == _BROADCAST:
        return "the broadcast address"
    return None


def _inner(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if any(address in net for net in _EMBEDDING):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why `address` is no webhook target, or None: it is one."""
    inner = _inner(address)
    for each in (address, inner) if inner is not None else (address,):
        if (never := _never(each)) is not None:
            return never
    if allow_private:
        return None
    if address in _LOCAL_NAT64:
        return "a local NAT64 address"
    if any(not each.is_global for each in (address, inner) if each is not None):
        return "not a public address"
    return None


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
    if port == 0:
        raise UnsafeTarget("port 0 is no port to send to")
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        raise UnsafeTarget(f"{host} does not resolve: {err}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:  # all of them: a client could pick any
        if (why := _refusal(address, allow_private=allow_private)) is not None:
            raise UnsafeTarget(f"{host} is {address}, {why}")
    pinned = addresses[0]
    literal = f"[{pinned}]" if pinned.version == 6 else str(pinned)
    userinfo, _, host_port = parts.netloc.rpartition("@")
    netloc = (userinfo + "@" if userinfo else "") + literal + (f":{port}" if port else "")
    return Target(
        urlunsplit(parts._replace(netloc=netloc)),
        headers={"Host": host_port},
        extensions={"sni_hostname": host},  # TLS still checks the name's certificate
    )
