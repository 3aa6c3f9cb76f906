"""Who may connect to the MQTT broker, and what each principal may publish and subscribe.

This module is the one place that says how invariant 3 ("no device can speak for another
device") is kept on the broker. It is pure: no sockets, no broker library, so both the
embedded amqtt broker (:mod:`.embedded`) and the Mosquitto configuration generator
(:mod:`.mosquitto`) apply the very same rules, and the rules can be tested on their own.

Topic layout (shared with ``kenshin.wire.topics``, restated here on purpose so the access
rules do not depend on anything but this file)::

    k/<gw>/d   readings        device publishes   (uplink)
    k/<gw>/s   status          device publishes   (uplink)
    k/<gw>/e   event           device publishes   (uplink)
    k/<gw>/r   command result  device publishes   (uplink)
    k/<gw>/c   commands        device subscribes  (downlink)
    k/<gw>/g   settings        device subscribes  (downlink, retained)

``<gw>`` is the device's MQTT username, which is its gateway id: 1..32 characters of
``[A-Za-z0-9_-]``. A *device* may publish exactly its own four uplink topics and subscribe
exactly its own two downlink topics: no wildcard at all (even ``k/<gw>/+`` is refused, so the
two brokers agree), no ``$share``, nothing outside its own ``k/<gw>/``. A *service* (the
server's ingest and command principal) may publish anything under ``k/`` and subscribe to any
well-formed filter under ``k/``, plainly or as a shared subscription ``$share/<group>/k/...``.

Passwords are stored and compared only as hashes, in Mosquitto's own ``$7$`` format
(PBKDF2-HMAC-SHA512: ``$7$<iterations>$<base64 salt>$<base64 64-byte key>``). One stored string
therefore serves both deployments: the embedded broker verifies it here, and the Mosquitto
``password_file`` is written from it verbatim, without the server ever keeping a plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = [
    "DEFAULT_PBKDF2_ITERATIONS",
    "DOWNLINK_CHANNELS",
    "TOPIC_ROOT",
    "UPLINK_CHANNELS",
    "Account",
    "CredentialChecker",
    "Principal",
    "PrincipalKind",
    "StaticCredentials",
    "hash_password",
    "is_gateway_id",
    "is_password_hash",
    "is_service_username",
    "may_publish",
    "may_receive",
    "may_subscribe",
    "verify_password",
]

TOPIC_ROOT = "k"
UPLINK_CHANNELS = frozenset({"d", "s", "e", "r"})
"""Channels a device publishes on: readings, status, event, command result."""
DOWNLINK_CHANNELS = frozenset({"c", "g"})
"""Channels a device subscribes to: commands, settings (retained)."""

_GATEWAY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_SERVICE_USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SHARE_GROUP = re.compile(r"[A-Za-z0-9_.-]{1,64}")

DEFAULT_PBKDF2_ITERATIONS = 101
"""Mosquitto's own ``mosquitto_passwd`` default. Device passwords are server-generated random
tokens (>= 128 bits), so the work factor does not protect them and every CONNECT pays for it;
raise it per call (``hash_password(..., iterations=...)``) for a human-chosen password."""
_SALT_BYTES = 12  # what mosquitto_passwd uses
_KEY_BYTES = 64  # SHA-512 output
_MAX_ITERATIONS = 10_000_000


class PrincipalKind(StrEnum):
    DEVICE = "device"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated MQTT user: a gateway (``device``) or the server itself (``service``)."""

    username: str
    kind: PrincipalKind

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", PrincipalKind(self.kind))


@runtime_checkable
class CredentialChecker(Protocol):
    """Turns the username and password of a CONNECT into a principal, or refuses it.

    The server implements it against its database (hashed per-device MQTT passwords);
    :class:`StaticCredentials` is the in-memory one for tests and the demo.
    """

    async def authenticate(self, username: str, password: str) -> Principal | None: ...


# --------------------------------------------------------------------------- names


def is_gateway_id(name: str) -> bool:
    """True for a valid gateway id (= device username): 1..32 of ``[A-Za-z0-9_-]``."""
    return _GATEWAY_ID.fullmatch(name) is not None


def is_service_username(name: str) -> bool:
    """True for a username a service principal may have (also safe in Mosquitto's files)."""
    return _SERVICE_USERNAME.fullmatch(name) is not None


def _valid_principal(principal: Principal) -> bool:
    if principal.kind is PrincipalKind.DEVICE:
        return is_gateway_id(principal.username)
    return is_service_username(principal.username)


# --------------------------------------------------------------------------- topics


def _is_topic_name(topic: str) -> bool:
    """A topic one may publish to: non-empty, no wildcard, no NUL, not a ``$`` topic."""
    return (
        bool(topic)
        and "+" not in topic
        and "#" not in topic
        and "\x00" not in topic
        and not topic.startswith("$")
    )


def _is_topic_filter(topic_filter: str) -> bool:
    """A well-formed MQTT topic filter (wildcards occupy whole levels, ``#`` only last)."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _under_root(levels: list[str]) -> bool:
    return len(levels) >= 2 and levels[0] == TOPIC_ROOT


def may_publish(principal: Principal, topic: str) -> bool:
    """May ``principal`` publish to the concrete topic ``topic``?"""
    if not _valid_principal(principal) or not _is_topic_name(topic):
        return False
    levels = topic.split("/")
    if principal.kind is PrincipalKind.SERVICE:
        return _under_root(levels)
    return (
        len(levels) == 3
        and levels[0] == TOPIC_ROOT
        and levels[1] == principal.username
        and levels[2] in UPLINK_CHANNELS
    )


def may_subscribe(principal: Principal, topic_filter: str) -> bool:
    """May ``principal`` subscribe with ``topic_filter`` (possibly ``$share/<group>/...``)?"""
    if not _valid_principal(principal):
        return False
    if principal.kind is PrincipalKind.DEVICE:
        # Exactly one of its own downlink topics: a literal topic, so no wildcard, no
        # $share and no '#' can ever reach a topic of another device.
        levels = topic_filter.split("/")
        return (
            _is_topic_name(topic_filter)
            and len(levels) == 3
            and levels[0] == TOPIC_ROOT
            and levels[1] == principal.username
            and levels[2] in DOWNLINK_CHANNELS
        )
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) != 3 or _SHARE_GROUP.fullmatch(parts[1]) is None:
            return False
        topic_filter = parts[2]
    return _is_topic_filter(topic_filter) and _under_root(topic_filter.split("/"))


def may_receive(principal: Principal, topic: str) -> bool:
    """May a message on the concrete ``topic`` be delivered to ``principal``?

    The check a broker makes at delivery time, a second line behind :func:`may_subscribe`.
    """
    if not _valid_principal(principal) or not _is_topic_name(topic):
        return False
    if principal.kind is PrincipalKind.SERVICE:
        return _under_root(topic.split("/"))
    return may_subscribe(principal, topic)


# --------------------------------------------------------------------------- passwords


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(
    password: str, *, iterations: int = DEFAULT_PBKDF2_ITERATIONS, salt: bytes | None = None
) -> str:
    """Hash ``password`` into Mosquitto's ``$7$`` PBKDF2-SHA512 format."""
    if not 1 <= iterations <= _MAX_ITERATIONS:
        raise ValueError(f"iterations out of range: {iterations}")
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    if not salt:
        raise ValueError("salt must not be empty")
    key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, _KEY_BYTES)
    return f"$7${iterations}${_b64(salt)}${_b64(key)}"


def _parse_hash(encoded: str) -> tuple[int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return None
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        key = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        return None
    if not 1 <= iterations <= _MAX_ITERATIONS or not salt or len(key) != _KEY_BYTES:
        return None
    return iterations, salt, key


def is_password_hash(encoded: str) -> bool:
    """True if ``encoded`` is a well-formed ``$7$`` hash (what Mosquitto will accept)."""
    return _parse_hash(encoded) is not None


def verify_password(password: str, encoded: str) -> bool:
    """Check ``password`` against a ``$7$`` hash, in constant time; a malformed hash is False."""
    parsed = _parse_hash(encoded)
    if parsed is None:
        return False
    iterations, salt, key = parsed
    candidate = hashlib.pbkdf2_hmac(
        "sha512", password.encode("utf-8"), salt, iterations, _KEY_BYTES
    )
    return hmac.compare_digest(candidate, key)


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True, slots=True)
class Account:
    """What the server knows of one MQTT user: its name, password hash and kind."""

    username: str
    password_hash: str
    kind: PrincipalKind

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", PrincipalKind(self.kind))
        valid = (
            is_gateway_id(self.username)
            if self.kind is PrincipalKind.DEVICE
            else is_service_username(self.username)
        )
        if not valid:
            raise ValueError(f"invalid {self.kind} username: {self.username!r}")
        if not is_password_hash(self.password_hash):
            raise ValueError(f"password of {self.username!r} is not a $7$ PBKDF2-SHA512 hash")

    @property
    def principal(self) -> Principal:
        return Principal(self.username, self.kind)


_DUMMY_HASH = hash_password("kenshin: no such user", salt=b"kenshin-dummy")


class StaticCredentials:
    """An in-memory :class:`CredentialChecker` over a fixed set of accounts.

    ``StaticCredentials({"gw1": (hash, "device"), ...})`` or, with plaintexts to be hashed,
    ``StaticCredentials.from_passwords({"gw1": ("secret", "device"), ...})``.
    """

    def __init__(
        self, accounts: Mapping[str, tuple[str, PrincipalKind | str]] | Iterable[Account] = ()
    ) -> None:
        self._accounts: dict[str, Account] = {}
        items: Iterable[Account] = (
            (
                Account(name, pw_hash, PrincipalKind(kind))
                for name, (pw_hash, kind) in accounts.items()
            )
            if isinstance(accounts, Mapping)
            else accounts
        )
        for account in items:
            self.add(account)

    @classmethod
    def from_passwords(
        cls,
        passwords: Mapping[str, tuple[str, PrincipalKind | str]],
        *,
        iterations: int = DEFAULT_PBKDF2_ITERATIONS,
    ) -> StaticCredentials:
        return cls(
            Account(name, hash_password(password, iterations=iterations), PrincipalKind(kind))
            for name, (password, kind) in passwords.items()
        )

    def add(self, account: Account) -> None:
        if account.username in self._accounts:
            raise ValueError(f"duplicate MQTT username: {account.username!r}")
        self._accounts[account.username] = account

    def accounts(self) -> Iterator[Account]:
        """Every account, e.g. to write a Mosquitto ``password_file`` and ``acl_file``."""
        return iter(self._accounts.values())

    async def authenticate(self, username: str, password: str) -> Principal | None:
        account = self._accounts.get(username)
        # An unknown user costs the same hash as a known one: no user enumeration by timing.
        ok = verify_password(password, account.password_hash if account else _DUMMY_HASH)
        return account.principal if ok and account is not None else None
