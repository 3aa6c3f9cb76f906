"""ECHONET Lite, sans-I/O: frames, property codecs, class descriptions, the device role;
plus a thin asyncio UDP adapter in `kenshin.echonet.udp`."""

from kenshin.jst import JST

from .classes import (
    Access,
    ClassSpec,
    PropertySpec,
    class_spec,
    decode_property,
    encode_property,
    property_spec,
    register_class,
)
from .device import LocalNode, LocalObject, PropertyRefused
from .edt import EnergyUnit
from .errors import EchonetDecodeError, EchonetEncodeError, EchonetError
from .frame import (
    CONTROLLER,
    ECHONET_PORT,
    EOJ,
    ESV,
    MULTICAST_GROUP,
    NODE_PROFILE,
    SMART_METER,
    Frame,
    OpaqueFrame,
    Property,
    decode_frame,
    encode_frame,
)
from .smart_meter import EnergyScale

__all__ = [
    "CONTROLLER", "ECHONET_PORT", "EOJ", "ESV", "JST", "MULTICAST_GROUP", "NODE_PROFILE",
    "SMART_METER", "Access", "ClassSpec", "EchonetDecodeError", "EchonetEncodeError",
    "EchonetError", "EnergyScale", "EnergyUnit", "Frame", "LocalNode", "LocalObject",
    "OpaqueFrame", "Property", "PropertyRefused", "PropertySpec", "class_spec",
    "decode_frame", "decode_property", "encode_frame", "encode_property", "property_spec",
    "register_class",
]  # fmt: skip
