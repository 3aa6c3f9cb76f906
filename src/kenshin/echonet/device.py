"""The device role, sans-I/O: objects that answer requests the way the specification says.

`LocalNode.handle(frame)` takes a decoded request and returns the response frames (none
for SetI that succeeded, for announcements and for objects the node does not have). The
node profile object (0x0EF001) is built and kept up to date from the node's objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import edt as e
from .classes import NODE_PROFILE, Access, ClassSpec, class_spec, property_spec
from .errors import EchonetDecodeError, EchonetEncodeError
from .frame import EOJ, ESV, RESPONSE_FOR, Frame, Property
from .frame import NODE_PROFILE as NODE_PROFILE_EOJ

Getter = Callable[[], bytes]
Setter = Callable[[bytes], None]  # raises ValueError (or EchonetError) to refuse


class PropertyRefused(Exception):
    """Raised by a setter to refuse a value that decodes but is not acceptable now."""


@dataclass(slots=True)
class _Binding:
    access: Access
    get: Getter | None = None
    set: Setter | None = None


class LocalObject:
    """One ECHONET object served by this node. Values are either stored bytes (set with
    `set_value`) or computed by getters bound with `bind`."""

    def __init__(self, eoj: EOJ, spec: ClassSpec | None = None):
        self.eoj = eoj
        self.spec = spec or class_spec(eoj.class_code)
        self._bindings: dict[int, _Binding] = {}
        self._stored: dict[int, bytes] = {}

    def _default_access(self, epc: int) -> Access:
        spec = property_spec(self.eoj.class_code, epc)
        return spec.access if spec is not None else Access.GET

    def set_value(self, epc: int, value: Any, *, access: Access | None = None) -> None:
        """Store a typed value (encoded through the class spec) or raw bytes."""
        spec = property_spec(self.eoj.class_code, epc)
        if isinstance(value, bytes | bytearray) or spec is None:
            data = bytes(value)
        else:
            data = spec.codec.encode(value)
        self._stored[epc] = data
        if epc not in self._bindings:
            self._bindings[epc] = _Binding(
                access or self._default_access(epc),
                get=lambda epc=epc: self._stored[epc],
                set=lambda edt, epc=epc: self._stored.__setitem__(epc, edt),
            )
        elif access is not None:
            self._bindings[epc].access = access

    def bind(
        self,
        epc: int,
        get: Getter | None = None,
        set: Setter | None = None,
        *,
        access: Access | None = None,
    ) -> None:
        """Serve `epc` through functions (the simulator's live registers)."""
        if access is None:
            access = self._default_access(epc)
            if set is None:
                access &= ~Access.SET
        self._bindings[epc] = _Binding(access, get, set)

    def value(self, epc: int) -> Any:
        """The current typed value (for tests and the simulator's own use)."""
        data = self.read(epc, Access.GET | Access.ANNO)
        if data is None:
            raise KeyError(f"{self.eoj} does not serve EPC 0x{epc:02X}")
        spec = property_spec(self.eoj.class_code, epc)
        return spec.codec.decode(data) if spec else data

    # -- property maps: always derived from what is bound -------------------------------

    def epcs_with(self, access: Access) -> frozenset[int]:
        return frozenset(epc for epc, b in self._bindings.items() if access & b.access)

    def refresh_property_maps(self) -> None:
        """Recompute 0x9D/0x9E/0x9F from the bindings (call after binding changes)."""
        for epc in (0x9D, 0x9E, 0x9F):
            self._bindings.pop(epc, None)
        get = self.epcs_with(Access.GET) | {0x9D, 0x9E, 0x9F}
        maps = {0x9D: self.epcs_with(Access.ANNO), 0x9E: self.epcs_with(Access.SET), 0x9F: get}
        for epc, epcs in maps.items():
            self.set_value(epc, epcs, access=Access.GET)

    # -- the access rules ----------------------------------------------------------------

    def read(self, epc: int, need: Access = Access.GET) -> bytes | None:
        """EDT for a Get (or INF_REQ); None means refused (SNA)."""
        binding = self._bindings.get(epc)
        if binding is None or binding.get is None or not need & binding.access:
            return None
        try:
            return binding.get()
        except (ValueError, LookupError, PropertyRefused, EchonetEncodeError):
            return None

    def write(self, epc: int, edt: bytes) -> bool:
        """Apply a Set; False means refused (unknown, read-only, malformed or rejected)."""
        binding = self._bindings.get(epc)
        if binding is None or binding.set is None or Access.SET not in binding.access:
            return False
        spec = property_spec(self.eoj.class_code, epc)
        try:
            if spec is not None:
                spec.codec.decode(edt)  # validate before the setter sees it
            binding.set(bytes(edt))
        except (EchonetDecodeError, ValueError, PropertyRefused):
            return False
        return True


class LocalNode:
    """A node: a node profile object plus device objects, answering requests."""

    def __init__(
        self,
        objects: Iterable[LocalObject],
        *,
        manufacturer_code: int = 0xFFFFFF,
        identification: bytes | None = None,
    ):
        self.objects: dict[EOJ, LocalObject] = {}
        for obj in objects:
            self.objects[obj.eoj] = obj
        profile = LocalObject(NODE_PROFILE_EOJ, NODE_PROFILE)
        device_eojs = tuple(self.objects)
        ident = identification or b"\xfe" + manufacturer_code.to_bytes(3, "big") + bytes(13)
        profile.set_value(0x80, e.OnOff.ON)
        profile.set_value(0x82, e.NodeVersion(1, 13))
        profile.set_value(0x83, ident)
        profile.set_value(0x8A, manufacturer_code)
        profile.set_value(0xD3, len(device_eojs))
        classes = tuple(dict.fromkeys(eoj.class_code for eoj in device_eojs))
        profile.set_value(0xD4, len(classes) + 1)  # the count includes the node profile class
        profile.set_value(0xD5, device_eojs, access=Access.ANNO)
        profile.set_value(0xD6, device_eojs)
        profile.set_value(0xD7, classes)
        self.objects[NODE_PROFILE_EOJ] = profile
        for obj in self.objects.values():
            obj.refresh_property_maps()
        self.profile = profile

    def _targets(self, deoj: EOJ) -> list[LocalObject]:
        """Instance code 0 addresses every instance of the class."""
        if deoj.instance == 0:
            return [o for e_, o in self.objects.items() if e_[:2] == deoj[:2]]
        obj = self.objects.get(deoj)
        return [obj] if obj is not None else []

    def handle(self, frame: Frame) -> list[Frame]:
        """Responses to one received frame (an empty list when none is due)."""
        if frame.esv == ESV.INFC:
            return [
                Frame(frame.tid, obj.eoj, frame.seoj, ESV.INFC_RES,
                      tuple(Property(p.epc) for p in frame.props))
                for obj in self._targets(frame.deoj)
            ]  # fmt: skip
        if not frame.esv.is_request:
            return []  # answers and announcements from others are not ours to answer
        return [r for obj in self._targets(frame.deoj) if (r := self._answer(obj, frame))]

    def _answer(self, obj: LocalObject, frame: Frame) -> Frame | None:
        ok_esv, sna_esv = RESPONSE_FOR[frame.esv]
        refused = False
        props: tuple[Property, ...] = ()
        props_get: tuple[Property, ...] = ()
        if frame.esv in (ESV.SETI, ESV.SETC, ESV.SETGET):
            # Accepted: PDC 0. Refused: the requested EDT echoed back.
            results = [(p, obj.write(p.epc, p.edt)) for p in frame.props]
            refused |= not all(ok for _, ok in results)
            props = tuple(Property(p.epc) if ok else p for p, ok in results)
        if frame.esv in (ESV.GET, ESV.INF_REQ, ESV.SETGET):
            wanted = frame.props_get if frame.esv == ESV.SETGET else frame.props
            need = Access.GET | Access.ANNO if frame.esv == ESV.INF_REQ else Access.GET
            values = []
            for p in wanted:  # each getter once: live values may change between reads
                edt = obj.read(p.epc, need)
                refused |= edt is None
                values.append(Property(p.epc, edt or b""))
            if frame.esv == ESV.SETGET:
                props_get = tuple(values)
            else:
                props = tuple(values)
        esv = sna_esv if refused else ok_esv
        if esv is None:
            return None  # a SetI that succeeded gets no answer
        return Frame(frame.tid, obj.eoj, frame.seoj, esv, props, props_get)

    def announcement(
        self, eoj: EOJ, epcs: Iterable[int], tid: int, to: EOJ = NODE_PROFILE_EOJ
    ) -> Frame:
        """An INF of the current values of `epcs` of object `eoj`."""
        obj = self.objects[eoj]
        props = tuple(Property(epc, obj.read(epc, Access.GET | Access.ANNO) or b"") for epc in epcs)
        return Frame(tid, eoj, to, ESV.INF, props)

    def instance_list_announcement(self, tid: int) -> Frame:
        """The start-up INF of 0xD5 that tells controllers which objects this node has."""
        return self.announcement(NODE_PROFILE_EOJ, (0xD5,), tid)
