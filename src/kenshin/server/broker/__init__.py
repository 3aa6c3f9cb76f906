"""The MQTT broker between gateways and the server, and who may do what on it.

* :mod:`.access`: principals, the :class:`CredentialChecker` protocol, password hashes in
  Mosquitto's ``$7$`` format, and the topic rules (``may_publish``, ``may_subscribe``,
  ``may_receive``) both brokers enforce.
* :mod:`.embedded`: :class:`EmbeddedBroker`, amqtt in-process, for the one-process deployment.
* :mod:`.mosquitto`: configuration files and a child-process runner for Mosquitto 2.0, the
  production broker.

``EmbeddedBroker`` is imported on first use, so the Mosquitto tools do not load amqtt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .access import (
    Account,
    CredentialChecker,
    Principal,
    PrincipalKind,
    StaticCredentials,
    hash_password,
    is_gateway_id,
    may_publish,
    may_receive,
    may_subscribe,
    verify_password,
)
from .mosquitto import MosquittoProcess
from .mosquitto_config import MosquittoFiles, MosquittoListener, write_mosquitto_config

if TYPE_CHECKING:
    from .embedded import EmbeddedBroker

__all__ = [
    "Account",
    "CredentialChecker",
    "EmbeddedBroker",
    "MosquittoFiles",
    "MosquittoListener",
    "MosquittoProcess",
    "Principal",
    "PrincipalKind",
    "StaticCredentials",
    "hash_password",
    "is_gateway_id",
    "may_publish",
    "may_receive",
    "may_subscribe",
    "verify_password",
    "write_mosquitto_config",
]


def __getattr__(name: str) -> Any:
    if name == "EmbeddedBroker":
        from .embedded import EmbeddedBroker

        return EmbeddedBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
