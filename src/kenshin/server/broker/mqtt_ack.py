"""Manual acknowledgement of received MQTT messages, for an aiomqtt client.

The ingest acknowledges a message (PUBACK) only after its database commit, so that a crash
in between makes the broker deliver it again. aiomqtt has no public API for that; paho-mqtt,
the engine under it, has (`manual_ack_set`, `ack`), reached through aiomqtt's private
``_client`` attribute. This module is the one place that reaches for it: an aiomqtt release
that moves it breaks here, at the first connection, with an error that says so (and the test
against a real Mosquitto, tests/server/test_mqtt_ack.py), never by acknowledging silently.
"""

from __future__ import annotations

from typing import Any, TypeVar

import aiomqtt

__all__ = ["ManualAckUnavailable", "ack", "manual"]

C = TypeVar("C", bound=aiomqtt.Client)


class ManualAckUnavailable(RuntimeError):
    """This aiomqtt/paho-mqtt pair no longer offers manual acknowledgement where we look."""


def _paho(client: aiomqtt.Client) -> Any:
    paho = getattr(client, "_client", None)
    if paho is None or not hasattr(paho, "manual_ack_set") or not hasattr(paho, "ack"):
        raise ManualAckUnavailable(
            f"aiomqtt {getattr(aiomqtt, '__version__', '?')}: no paho client with manual "
            "acknowledgement under aiomqtt.Client; see kenshin/server/broker/mqtt_ack.py"
        )
    return paho


def manual(client: C) -> C:
    """`client`, set to leave every received QoS 1/2 message unacknowledged until `ack`.

    Call it before connecting (``async with mqtt_ack.manual(aiomqtt.Client(...))``): a
    persistent session's queued messages may arrive with the CONNACK, and any taken before
    this is set would be acknowledged at once."""
    _paho(client).manual_ack_set(True)
    return client


def ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Acknowledge `message` (received on `client`) to the broker: it is ours now."""
    _paho(client).ack(message.mid, message.qos)
