"""One transport-neutral smart-meter session (see `session`)."""

from .session import (
    Energy,
    FixedTimeReading,
    HistoryPoint,
    MeterError,
    MeterFacts,
    MeterLink,
    MeterTimeout,
    PropertyUnavailable,
    SmartMeterSession,
    UdpMeterLink,
)

__all__ = [
    "Energy",
    "FixedTimeReading",
    "HistoryPoint",
    "MeterError",
    "MeterFacts",
    "MeterLink",
    "MeterTimeout",
    "PropertyUnavailable",
    "SmartMeterSession",
    "UdpMeterLink",
]
