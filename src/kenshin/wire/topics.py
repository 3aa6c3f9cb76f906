"""MQTT topics of the gateway↔cloud protocol, and the access rules for devices.

The layout is fixed (the broker ACL is written against it) and short, because the topic
travels in every PUBLISH a gateway pays for:

    k/<gw>/d   readings batch      device → cloud
    k/<gw>/s   status (heartbeat)  device → cloud
    k/<gw>/e   event               device → cloud
    k/<gw>/r   command result      device → cloud
    k/<gw>/c   command             cloud → device
    k/<gw>/g   settings (retained) cloud → device

`<gw>` is the gateway's device id: 1..32 of [A-Za-z0-9_-], so it can never hold a level
separator, a wildcard or a leading `$`. Topics are case-sensitive, as MQTT's are.
"""

from __future__ import annotations

import re
from enum import StrEnum

from .errors import WireTopicError

TOPIC_ROOT = "k"
GATEWAY_ID_MAX_LEN = 32
_GATEWAY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}", re.ASCII)


class Kind(StrEnum):
    """The last topic level: what a topic carries."""

    READINGS = "d"
    STATUS = "s"
    EVENT = "e"
    RESULT = "r"
    COMMAND = "c"
    SETTINGS = "g"

    @property
    def uplink(self) -> bool:
        """Published by the device (and paid for on its cellular plan)."""
        return self in UPLINK_KINDS


UPLINK_KINDS = frozenset({Kind.READINGS, Kind.STATUS, Kind.EVENT, Kind.RESULT})
DOWNLINK_KINDS = frozenset({Kind.COMMAND, Kind.SETTINGS})
_KIND_BY_LETTER = {k.value: k for k in Kind}

# What the ingest subscribes to: readings on a shared subscription, so N workers split
# the load; the rest plainly (each low-volume, and a status seen twice is harmless).
INGEST_SHARE_GROUP = "ingest"
READINGS_SHARED_FILTER = f"$share/{INGEST_SHARE_GROUP}/{TOPIC_ROOT}/+/{Kind.READINGS}"
STATUS_FILTER = f"{TOPIC_ROOT}/+/{Kind.STATUS}"
EVENT_FILTER = f"{TOPIC_ROOT}/+/{Kind.EVENT}"
RESULT_FILTER = f"{TOPIC_ROOT}/+/{Kind.RESULT}"
INGEST_FILTERS = (READINGS_SHARED_FILTER, STATUS_FILTER, EVENT_FILTER, RESULT_FILTER)


def is_gateway_id(value: object) -> bool:
    return isinstance(value, str) and _GATEWAY_ID.fullmatch(value) is not None


def check_gateway_id(value: object) -> str:
    """`value` if it is a valid gateway id; `WireTopicError` otherwise."""
    if not is_gateway_id(value):
        raise WireTopicError(
            f"not a gateway id: need 1..{GATEWAY_ID_MAX_LEN} of [A-Za-z0-9_-]",
            where=_show_topic(value),
        )
    return value  # type: ignore[return-value]


def topic_for(kind: Kind | str, gateway_id: str) -> str:
    """The topic of `kind` for one gateway, e.g. `topic_for(Kind.READINGS, "gw1")` is
    `"k/gw1/d"`."""
    letter = _KIND_BY_LETTER.get(kind) if isinstance(kind, str) else None
    if letter is None:
        raise WireTopicError(f"unknown topic kind {kind!r}")
    return f"{TOPIC_ROOT}/{check_gateway_id(gateway_id)}/{letter.value}"


def parse_topic(topic: str) -> tuple[Kind, str]:
    """(kind, gateway id) of one of our topics; `WireTopicError` for any other topic."""
    if not isinstance(topic, str):
        raise WireTopicError(f"a topic is text, got {type(topic).__name__}")
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != TOPIC_ROOT:
        raise WireTopicError(f"not a {TOPIC_ROOT}/<gw>/<kind> topic", where=_show_topic(topic))
    kind = _KIND_BY_LETTER.get(parts[2])
    if kind is None:
        raise WireTopicError(f"unknown topic kind {parts[2][:8]!r}", where=_show_topic(topic))
    return kind, check_gateway_id(parts[1])


def device_may_publish(gateway_id: str, topic: str) -> bool:
    """True only for the device's own four uplink topics, spelled exactly."""
    if not is_gateway_id(gateway_id) or not isinstance(topic, str):
        return False
    try:
        kind, owner = parse_topic(topic)
    except WireTopicError:
        return False
    return owner == gateway_id and kind in UPLINK_KINDS


def device_may_subscribe(gateway_id: str, topic_filter: str) -> bool:
    """True only for the device's own command and settings topics, spelled exactly.

    Every wildcard is refused, even `k/<gw>/+` that could only match the device's own
    topics: it would also echo the device's uplink back to it over the billed link. Shared
    subscriptions (`$share/...`) are the ingest's, never a device's."""
    if not is_gateway_id(gateway_id) or not isinstance(topic_filter, str):
        return False
    try:
        kind, owner = parse_topic(topic_filter)
    except WireTopicError:
        return False
    return owner == gateway_id and kind in DOWNLINK_KINDS


def device_subscriptions(gateway_id: str) -> tuple[str, str]:
    """What a gateway subscribes to: its command topic and its (retained) settings."""
    return topic_for(Kind.COMMAND, gateway_id), topic_for(Kind.SETTINGS, gateway_id)


def filter_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching of a topic filter against a topic name (`+` one level, `#` the rest,
    wildcards never matching a first level that starts with `$`). A shared subscription
    `$share/<group>/<filter>` matches as its filter. A malformed filter matches nothing."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) != 3 or not parts[1] or "+" in parts[1] or "#" in parts[1]:
            return False
        topic_filter = parts[2]
    if not topic_filter or not topic or "+" in topic or "#" in topic:
        return False
    want = topic_filter.split("/")
    have = topic.split("/")
    for i, level in enumerate(want):
        if level == "#":  # the rest, the parent level included; last in the filter
            return i == len(want) - 1 and not (i == 0 and have[0].startswith("$"))
        if "#" in level or ("+" in level and level != "+"):
            return False
        if i >= len(have):
            return False
        if level == "+":
            if i == 0 and have[0].startswith("$"):
                return False
        elif level != have[i]:
            return False
    return len(want) == len(have)


def _show_topic(value: object) -> str:
    """A topic or id for an error message: shortened, never more than 80 characters."""
    if not isinstance(value, str):
        return type(value).__name__
    return repr(value if len(value) <= 80 else value[:77] + "...")
