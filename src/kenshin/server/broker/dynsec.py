"""Mosquitto's dynamic-security plugin as the managed broker's authentication and ACLs.

Why: with password and ACL files, every enrollment rewrote both files for the whole fleet
and reloaded the broker, so a fleet reconnecting after a broker restart cost N enrollments
× O(N) file work. With the plugin, adding, rotating or revoking one gateway's credential is
one message on ``$CONTROL/dynamic-security/v1`` from the server's service account, touching
that gateway alone; the broker is neither restarted nor reloaded, and other connections are
not affected.

What it holds, per gateway (MQTT username = serial):

* a client with the gateway's ``$7$`` PBKDF2-SHA512 hash (the plugin stores the same
  algorithm as ``salt`` / ``password`` / ``iterations``, so a hash from the database is
  carried over as it is and no plaintext is kept), and ``clientid`` fixed to the username:
  a login with another gateway's client id is refused, so nobody can take over another
  gateway's session by knowing its serial (it is printed on the box);
* a role of its own (Mosquitto 2.0's plugin has no ``%u`` substitution): send on its
  uplink topics, receive and subscribe to its downlink topics, nothing else.

The service account gets ``k/#`` (plainly and through ``$share``) and the ``$CONTROL`` API.
Default access is deny for sending, receiving and subscribing.

At start the server writes the whole ``dynamic-security.json`` from the database (its one
source of truth) before Mosquitto reads it; afterwards the plugin keeps the file itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from .access import DOWNLINK_CHANNELS, TOPIC_ROOT, UPLINK_CHANNELS, Account, PrincipalKind

__all__ = [
    "CONTROL_TOPIC",
    "RESPONSE_TOPIC",
    "SERVICE_ROLE",
    "config",
    "grant_device",
    "revoke_device",
]

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
SERVICE_ROLE = "kenshin-service"
PLUGIN_PATHS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)


def _role_name(username: str) -> str:
    return f"gw:{username}"


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "allow": True}


def device_acls(username: str) -> list[dict[str, Any]]:
    own = f"{TOPIC_ROOT}/{username}"
    acls = [_acl("publishClientSend", f"{own}/{ch}") for ch in sorted(UPLINK_CHANNELS)]
    for channel in sorted(DOWNLINK_CHANNELS):
        acls += [
            _acl("publishClientReceive", f"{own}/{channel}"),
            _acl("subscribeLiteral", f"{own}/{channel}"),
        ]
    return acls


def service_acls() -> list[dict[str, Any]]:
    everything = f"{TOPIC_ROOT}/#"
    acls = [_acl(kind, everything) for kind in ("publishClientSend", "publishClientReceive")]
    # Mosquitto 2.0 checks a shared subscription with its $share/<group>/ prefix.
    shared = f"$share/+/{TOPIC_ROOT}/#"
    acls += [_acl("subscribePattern", t) for t in (everything, shared)]
    acls.append(_acl("unsubscribePattern", "#"))
    control = "$CONTROL/dynamic-security/#"
    acls += [_acl(k, control) for k in ("publishClientSend", "publishClientReceive")]
    return [*acls, _acl("subscribePattern", control)]


def _hash_fields(password_hash: str) -> dict[str, Any]:
    """``$7$<iterations>$<salt>$<key>`` as the plugin's password, salt and iterations."""
    _, seven, iterations, salt, key = password_hash.split("$")
    if seven != "7":
        raise ValueError("not a $7$ PBKDF2-SHA512 hash")
    base64.b64decode(salt, validate=True), base64.b64decode(key, validate=True)
    return {"password": key, "salt": salt, "iterations": int(iterations)}


def config(accounts: Iterable[Account]) -> dict[str, Any]:
    """The whole ``dynamic-security.json`` for these accounts."""
    clients, roles = [], [{"rolename": SERVICE_ROLE, "acls": service_acls()}]
    for account in accounts:
        client = {"username": account.username, **_hash_fields(account.password_hash)}
        if account.kind is PrincipalKind.SERVICE:
            client["roles"] = [{"rolename": SERVICE_ROLE}]
        else:
            client["clientid"] = account.username
            client["roles"] = [{"rolename": _role_name(account.username)}]
            roles.append(
                {"rolename": _role_name(account.username), "acls": device_acls(account.username)}
            )
        clients.append(client)
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def config_text(accounts: Iterable[Account]) -> str:
    return json.dumps(config(accounts), indent=1)


def grant_device(username: str, password: str) -> list[dict[str, Any]]:
    """Commands that make this gateway's credential the only one for its username: any
    earlier one is deleted first (which also disconnects a session logged in with it)."""
    return [
        *revoke_device(username),
        {"command": "createRole", "rolename": _role_name(username), "acls": device_acls(username)},
        {
            "command": "createClient",
            "username": username,
            "password": password,
            "clientid": username,
            "roles": [{"rolename": _role_name(username)}],
        },
    ]


def revoke_device(username: str) -> list[dict[str, Any]]:
    """Commands that end this gateway's access: its client (and connection) and role."""
    return [
        {"command": "deleteClient", "username": username},
        {"command": "deleteRole", "rolename": _role_name(username)},
    ]


def find_plugin() -> str:
    import os

    for path in PLUGIN_PATHS:
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        "mosquitto_dynamic_security.so not found (Debian: it comes with the mosquitto package)"
    )
