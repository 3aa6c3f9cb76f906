"""From the settings' meter section to a running link: credentials opened, the poll
policy applied, the UDP or Wi-SUN link built. The agent owns the poller's task."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kenshin.wire import Settings
from kenshin.wire.sealing import SealError

from .poller import PollPolicy

POLICY_SECONDS = (
    "instant_interval_s",
    "currents_every_s",
    "fixed_delay_s",
    "fixed_retry_s",
    "fixed_give_up_s",
)


def open_meter_section(settings: Settings, seal_key: Any, gateway_id: str) -> dict[str, Any]:
    """The meter section with its sealed B-route credentials opened (in memory only;
    clear ones, from a server older than sealing, are taken as they are). Raises
    `SealError` (or `NotSealedToThisKey`) when they cannot be opened."""
    meter = dict(settings.values.get("meter") or {})
    sealed = meter.pop("sealed", None)
    if sealed is not None:
        meter |= seal_key.open(sealed, serial=gateway_id, version=settings.version)
    if meter.get("link") == "wisun" and not {"broute_id", "broute_password"} <= meter.keys():
        raise SealError("no B-route credentials for the Wi-SUN meter (withheld?)")
    return meter


def apply_policy(policy: PollPolicy, poll: dict) -> None:
    """The settings' `poll` section onto a policy; values out of range are passed over."""
    for name in POLICY_SECONDS:
        if isinstance(poll.get(name), int | float) and poll[name] > 0:
            setattr(policy, name, float(poll[name]))
    days = poll.get("initial_backfill_days")
    if isinstance(days, int) and 0 <= days <= 99:
        policy.initial_backfill_days = days


async def open_link(meter: dict) -> tuple[Any, Callable[[], Awaitable[None]]]:
    """The meter link the section names, and how to close it."""
    if meter.get("link") == "wisun":
        from kenshin.meter.wisun import WisunMeterLink
        from kenshin.wisun.lines import Dialect
        from kenshin.wisun.session import BrouteConfig

        model = meter.get("model")
        config = BrouteConfig(
            meter["device"],
            meter["broute_id"],
            meter["broute_password"],
            dialect=Dialect[model.upper()] if model else None,
        )
        link = WisunMeterLink(config)
        return link, link.close

    from kenshin.echonet.udp import EchonetClient
    from kenshin.meter import UdpMeterLink

    port = int(meter.get("port", 3610))
    client = EchonetClient(host="0.0.0.0", port=0, remote_port=port, join_multicast=False)
    await client.open()

    async def close() -> None:
        client.close()

    return UdpMeterLink(client, meter["host"], port), close
