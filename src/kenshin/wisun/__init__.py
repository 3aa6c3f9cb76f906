"""Wi-SUN B-route through an SKSTACK IP dongle, sans-I/O: the parser of what the dongle
prints (`lines`) and the builders of what the host writes (`commands`)."""

from . import commands
from .errors import ERROR_CODES, CommandFailed, SkstackError, SkstackParseError
from .lines import (
    MAX_LINE,
    MAX_UDP_PAYLOAD,
    AppVersion,
    Dialect,
    Echo,
    Event,
    EventCode,
    Fail,
    Garbled,
    Info,
    Item,
    LinkLocal,
    Ok,
    PanDescriptor,
    ReceivedUdp,
    SkstackParser,
    Unknown,
    Version,
    parse_strict,
)

__all__ = [
    "ERROR_CODES", "MAX_LINE", "MAX_UDP_PAYLOAD", "AppVersion", "CommandFailed", "Dialect",
    "Echo", "Event", "EventCode", "Fail", "Garbled", "Info", "Item", "LinkLocal", "Ok",
    "PanDescriptor", "ReceivedUdp", "SkstackError", "SkstackParseError", "SkstackParser",
    "Unknown", "Version", "commands", "parse_strict",
]  # fmt: skip
