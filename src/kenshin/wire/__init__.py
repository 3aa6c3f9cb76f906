"""The gateway↔cloud protocol over MQTT, shared by both ends, sans-I/O: topics and the
access rules for devices (`topics`), typed messages (`messages`), compact canonical
CBOR with every field checked both ways (`codec`), enrollment (`enrollment`) and the
sealing of settings secrets to the gateway's key (`sealing`). Bytes in, typed messages out; no
sockets, no broker, no asyncio. See docs/wire.md."""

from .codec import (
    LINK_STATE_CODES,
    MAX_COUNTERS,
    MAX_FIXED_VALUES,
    MAX_INSTANT_SAMPLES,
    MAX_KEY_LEN,
    MAX_MAP_DEPTH,
    MAX_MAP_ITEMS,
    MAX_NAME_LEN,
    MAX_PAYLOAD_BYTES,
    MAX_TEXT_LEN,
    MAX_TIME_S,
    MIN_TIME_S,
    WIRE_VERSION,
    decode,
    decode_publish,
    encode,
    encode_publish,
    to_json,
)
from .errors import (
    WireDecodeError,
    WireEncodeError,
    WireError,
    WireLimitError,
    WireTopicError,
    WireVersionError,
)
from .messages import (
    MESSAGE_FOR_KIND,
    MESSAGE_TYPES,
    Command,
    CommandName,
    CommandResult,
    Event,
    FixedTimeValue,
    InstantSample,
    LinkState,
    Message,
    MeterScale,
    ReadingsBatch,
    Settings,
    Status,
    ValueSource,
    is_secret_key,
    mask_secrets,
)
from .topics import (
    DOWNLINK_KINDS,
    EVENT_FILTER,
    INGEST_FILTERS,
    INGEST_SHARE_GROUP,
    READINGS_SHARED_FILTER,
    RESULT_FILTER,
    STATUS_FILTER,
    UPLINK_KINDS,
    Kind,
    check_gateway_id,
    device_may_publish,
    device_may_subscribe,
    device_subscriptions,
    filter_matches,
    is_gateway_id,
    parse_topic,
    topic_for,
)

__all__ = [
    "DOWNLINK_KINDS", "EVENT_FILTER", "INGEST_FILTERS", "INGEST_SHARE_GROUP",
    "LINK_STATE_CODES", "MAX_COUNTERS", "MAX_FIXED_VALUES", "MAX_INSTANT_SAMPLES",
    "MAX_KEY_LEN", "MAX_MAP_DEPTH", "MAX_MAP_ITEMS", "MAX_NAME_LEN", "MAX_PAYLOAD_BYTES",
    "MAX_TEXT_LEN", "MAX_TIME_S", "MESSAGE_FOR_KIND", "MESSAGE_TYPES", "MIN_TIME_S",
    "READINGS_SHARED_FILTER", "RESULT_FILTER", "STATUS_FILTER", "UPLINK_KINDS",
    "WIRE_VERSION", "Command", "CommandName", "CommandResult", "Event", "FixedTimeValue",
    "InstantSample", "Kind", "LinkState", "Message", "MeterScale", "ReadingsBatch",
    "Settings", "Status", "ValueSource", "WireDecodeError", "WireEncodeError", "WireError",
    "WireLimitError", "WireTopicError", "WireVersionError", "check_gateway_id", "decode",
    "decode_publish", "device_may_publish", "device_may_subscribe", "device_subscriptions",
    "encode", "encode_publish", "filter_matches", "is_gateway_id", "is_secret_key",
    "mask_secrets", "parse_topic", "to_json", "topic_for",
]  # fmt: skip
