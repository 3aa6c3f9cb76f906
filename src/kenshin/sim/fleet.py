"""Many simulated meters in one process, each its own ECHONET Lite node.

Each meter gets its own loopback address (127.0.1.1, 127.0.1.2, ... on one port, as
meters on a LAN have) or, with `distinct_ports`, its own port on one address. One
multicast listener lets all of them answer discovery.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import replace

from kenshin.echonet.frame import ECHONET_PORT
from kenshin.echonet.udp import MulticastListener

from .clock import Clock
from .meter import MeterConfig, MeterEndpoint, SimulatedMeter


def fleet_addresses(
    count: int, base_host: str = "127.0.1.1", port: int = ECHONET_PORT, distinct_ports: bool = False
) -> Iterator[tuple[str, int]]:
    """Where meter i listens. Only loopback addresses are accepted: the simulator must
    never put traffic on a real network."""
    base = ipaddress.IPv4Address(base_host)
    if not base.is_loopback:
        raise ValueError(f"{base_host} is not a loopback address; simulators stay on 127.0.0.0/8")
    for i in range(count):
        if distinct_ports:
            yield str(base), port + i
        else:
            host = base + i
            if not host.is_loopback:
                raise ValueError(f"{count} meters do not fit in 127.0.0.0/8 from {base_host}")
            yield str(host), port


class SimFleet:
    """`count` meters with seeds seed, seed+1, ... behind their own endpoints."""

    def __init__(
        self,
        count: int,
        clock: Clock,
        *,
        seed: int = 1,
        base_host: str = "127.0.1.1",
        port: int = ECHONET_PORT,
        distinct_ports: bool = False,
        pv: bool | None = None,
        multicast: bool = True,
        config: MeterConfig | None = None,
    ):
        self.clock = clock
        template = config or MeterConfig()
        self.meters: list[SimulatedMeter] = []
        self.endpoints: list[MeterEndpoint] = []
        for i, (host, meter_port) in enumerate(
            fleet_addresses(count, base_host, port, distinct_ports)
        ):
            meter_config = replace(
                template,
                seed=seed + i,
                pv=template.pv if pv is None else pv,
                faults=replace(template.faults),  # each meter misbehaves on its own
            )
            meter = SimulatedMeter(clock, meter_config)
            self.meters.append(meter)
            self.endpoints.append(MeterEndpoint(meter, host=host, port=meter_port, group_port=port))
        self.listener = MulticastListener(port=port) if multicast else None

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(ep.host, ep.port) for ep in self.endpoints]

    async def start(self, *, announce: bool = True) -> None:
        if self.listener is not None:
            await self.listener.start()
        for endpoint in self.endpoints:
            await endpoint.start(announce=announce)
            # Only an open endpoint may hear the group: the listener asks its address.
            if self.listener is not None:
                self.listener.devices.append(endpoint)

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()
        if self.listener is not None:
            self.listener.close()

    async def __aenter__(self) -> SimFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    @property
    def requests_answered(self) -> int:
        return sum(ep.requests_answered for ep in self.endpoints)
