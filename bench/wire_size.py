"""Uplink bytes of the wire protocol: `.venv/bin/python bench/wire_size.py`.

For a few polling and batching policies: the bytes of one readings batch as
`kenshin.wire.encode` writes it (the CBOR payload, and the MQTT 3.1.1 PUBLISH at QoS 1
around it), against the same readings as naive JSON, one PUBLISH per reading; then the
month (30 days) of each. Readings come from the load simulator (a 3-wire house with
rooftop PV: power, R and T currents, normal and reverse 30-minute values) over one whole
day, read as the poller reads them: stamped at the tick, currents every fifth sample.

Then the worked example of docs/wire.md, field by field, one heartbeat, and one
demand-response round trip (DrEvent down, DrAck and DrReport up) for a home of four devices.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import cbor2

from kenshin.echonet.classes import (
    BatteryMode,
    EvMode,
    PowerSaving,
    WaterHeating,
    encode_property,
)
from kenshin.sim.load import HouseholdProfile, LoadModel
from kenshin.sim.registers import MeterRegisters
from kenshin.wire import (
    DrAck,
    DrAckState,
    DrDeviceReport,
    DrEvent,
    DrReport,
    DrSet,
    FixedTimeValue,
    InstantSample,
    LinkState,
    MeterScale,
    ReadingsBatch,
    Status,
    encode,
)
from kenshin.wire.codec import JST

Row = tuple[str, ...]

GATEWAY_ID = "b827eb4f21c9"  # 12 characters, as a MAC-derived id would be
READINGS_TOPIC = f"k/{GATEWAY_ID}/d"
STATUS_TOPIC = f"k/{GATEWAY_ID}/s"
COMMAND_TOPIC = f"k/{GATEWAY_ID}/c"
RESULT_TOPIC = f"k/{GATEWAY_ID}/r"
METER_REF = "0"
SEQ = 17_520  # a year of 30-minute batches in
DAY = datetime(2024, 6, 1, tzinfo=JST)  # a Saturday in June: PV selling around noon
HOUSE_SEED = 7
DAYS_PER_MONTH = 30
PUBACK_BYTES = 4  # the broker's answer to a QoS 1 PUBLISH (downlink)


@dataclass(frozen=True)
class Policy:
    name: str
    instant_s: int  # 0: no instant reads
    batch_s: int
    currents_every: int = 5  # currents with every n-th sample (the poller: every 300 s); 0 none
    at_tick: bool = True  # stamped at the scheduled tick (the poller), or when the read ended


POLICIES = (
    Policy("default: 60 s power, currents 5 min, batch 30 min", 60, 1800),
    Policy("  same, stamped when the read ended (0-2 s)", 60, 1800, at_tick=False),
    Policy("  same, currents with every sample", 60, 1800, currents_every=1),
    Policy("60 s power only, batch 30 min", 60, 1800, currents_every=0),
    Policy("30 s power, currents 5 min, batch 30 min", 30, 1800, currents_every=10),
    Policy("10 s power, currents 5 min, batch 30 min", 10, 1800, currents_every=30),
    Policy("60 s power, currents 5 min, batch 5 min", 60, 300),
    Policy("60 s power, currents 5 min, batch 60 min", 60, 3600),
    Policy("300 s power+currents, batch 60 min", 300, 3600, currents_every=1),
    Policy("30-min energy only, batch 30 min", 0, 1800, currents_every=0),
    Policy("30-min energy only, batch 6 h", 0, 6 * 3600, currents_every=0),
)


class House:
    """The simulated meter the readings come from."""

    def __init__(self) -> None:
        load = LoadModel(HouseholdProfile.from_seed(HOUSE_SEED, pv=True))
        self.registers = MeterRegisters(load, install=DAY - timedelta(days=400), anchor=DAY)
        self.scale = MeterScale(
            self.registers.coefficient, self.registers.unit_code, self.registers.digits
        )

    def sample(self, stamp_s: int, currents: bool) -> InstantSample:
        moment = datetime.fromtimestamp(stamp_s, JST)
        power = self.registers.instant_power_w(moment)
        if not currents:
            return InstantSample(stamp_s, power)
        r, t = self.registers.currents_da(moment)
        return InstantSample(stamp_s, power, r, t)

    def fixed(self, slot_s: int) -> FixedTimeValue:
        normal, reverse = self.registers.raw(datetime.fromtimestamp(slot_s, JST))
        return FixedTimeValue(slot_s, normal, reverse)


def batch_for(house: House, policy: Policy, start_s: int, seq: int, rng: random.Random):
    """The batch a gateway sends for [start_s, start_s + batch_s)."""
    samples = []
    if policy.instant_s:
        for i, tick in enumerate(range(start_s, start_s + policy.batch_s, policy.instant_s)):
            read_s = 0 if policy.at_tick else int(rng.uniform(0.2, 2.6))  # a Wi-SUN read
            currents = bool(policy.currents_every) and i % policy.currents_every == 0
            samples.append(house.sample(tick + read_s, currents))
    first_slot = -(-start_s // 1800) * 1800  # the half hours inside the window
    fixed = tuple(house.fixed(s) for s in range(first_slot, start_s + policy.batch_s, 1800))
    return ReadingsBatch(seq, METER_REF, tuple(samples), fixed, house.scale if fixed else None)


# docs/wire.md's worked example: 12:00-12:30 JST on DAY at the default policy, taken once
# from the simulator (house 7, selling ~2 kW) and frozen, so the byte count the docs
# state (and tests/wire check) stays put when the simulator changes.
WORKED_SLOT_S = 1_717_210_800  # 2024-06-01T12:00:00+09:00
WORKED_POWER_W = (
    -1728, -1569, -1974, -2059, -2001, -2194, -1961, -2008, -1960, -2184,
    -1851, -1899, -2152, -1923, -2081, -1728, -2371, -1937, -2349, -1986,
    -1545, -1965, -1721, -1859, -2142, -2307, -1992, -2363, -1800, -2055,
)  # fmt: skip
WORKED_CURRENTS_EVERY = 5  # the currents are read with samples 0, 5, ... 25
WORKED_CURRENT_R_DA = (-80, -101, -85, -80, -71, -106)
WORKED_CURRENT_T_DA = (-110, -140, -118, -110, -99, -148)
WORKED_FIXED = FixedTimeValue(WORKED_SLOT_S, normal_raw=25_649, reverse_raw=21_433)


def worked_batch() -> ReadingsBatch:
    """The batch of docs/wire.md: 30 samples at 60 s stamped at the tick, currents with
    every fifth, one 30-minute value both ways."""
    samples = []
    for i, power in enumerate(WORKED_POWER_W):
        r = t = None
        if i % WORKED_CURRENTS_EVERY == 0:
            j = i // WORKED_CURRENTS_EVERY
            r, t = WORKED_CURRENT_R_DA[j], WORKED_CURRENT_T_DA[j]
        samples.append(InstantSample(WORKED_SLOT_S + 60 * i, power, r, t))
    return ReadingsBatch(SEQ, METER_REF, tuple(samples), (WORKED_FIXED,), MeterScale(1, 0x01, 6))


def heartbeat() -> Status:
    at = int((DAY + timedelta(hours=12, minutes=30)).timestamp())
    return Status(at, "0.1.0", 86_400 * 12, LinkState.JOINED, 172, 0, at - 31, 3)


def dr_round_trip() -> tuple[DrEvent, DrAck, DrReport]:
    """A 17:00-19:00 event asking 1.5 kW a half hour, with its price, for the home of
    tests/gateway/test_dr_agent.py (battery, EV charger, air conditioner, water heater):
    the ack, and the report of its 12 Sets (the restores included) and each device's power
    (the air conditioner's of the size its model draws in August)."""
    start = int(datetime(2026, 8, 3, 17, tzinfo=JST).timestamp())
    slots = [start + 1800 * i for i in range(4)]
    targets, price = tuple((s, 1500) for s in slots), tuple((s, 4500) for s in slots)
    event = DrEvent(10_482, start, start + 7200, targets, None, price, start - 3600)

    def device(eoj: int, changes: list[tuple[int, object, object]], powers) -> DrDeviceReport:
        code = eoj >> 8
        sets = [DrSet(epc, e, True, e) for epc, v, _ in changes
                for e in [encode_property(code, epc, v)]]  # fmt: skip
        sets += [DrSet(epc, e, True, e, True) for epc, _, v in reversed(changes)
                 for e in [encode_property(code, epc, v)]]  # fmt: skip
        return DrDeviceReport(eoj, tuple(sets), *powers)

    report = DrReport(10_482, (
        device(0x027D01, [(0xEC, 1000, 3000), (0xDA, BatteryMode.DISCHARGING,
                                                BatteryMode.STANDBY)], (0, -1000, 0)),
        device(0x026B01, [(0xB0, WaterHeating.MANUAL_STOP, WaterHeating.AUTO)], (1500, 0, 1500)),
        device(0x027E01, [(0xDA, EvMode.STANDBY, EvMode.CHARGING)], (3000, 0, 3000)),
        device(0x013001, [(0xB3, 28, 26), (0x8F, PowerSaving.SAVING, PowerSaving.NORMAL)],
               (812, 655, 806)),
    ), True)  # fmt: skip
    return event, DrAck(10_482, DrAckState.ACCEPTED, 4), report


def dr_rows() -> list[Row]:
    event, ack, report = dr_round_trip()
    rows: list[Row] = [("message", "topic", "payload", "PUBLISH")]
    total_up = 0
    for message, topic in ((event, COMMAND_TOPIC), (ack, RESULT_TOPIC), (report, RESULT_TOPIC)):
        size = len(encode(message))
        publish = mqtt_publish_bytes(topic, size)
        total_up += publish if topic == RESULT_TOPIC else 0
        rows.append((type(message).__name__, topic, str(size), str(publish)))
    down = mqtt_publish_bytes(COMMAND_TOPIC, len(encode(event)))
    rows.append(("round trip", "", f"{down} down", f"{total_up} up"))
    return rows


# -- naive JSON and MQTT ----------------------------------------------------------------


def naive_json_readings(batch: ReadingsBatch) -> list[bytes]:
    """Each reading as the JSON document a first design would publish on its own."""
    docs: list[dict] = []
    for s in batch.instant:
        doc = {
            "gateway_id": GATEWAY_ID,
            "meter": batch.meter,
            "time": datetime.fromtimestamp(s.at_s, JST).isoformat(),
            "power_w": s.power_w,
        }
        if s.current_r_da is not None:
            doc |= {"current_r_da": s.current_r_da, "current_t_da": s.current_t_da}
        docs.append(doc)
    for v in batch.fixed:
        assert batch.scale is not None
        docs.append({"gateway_id": GATEWAY_ID, "meter": batch.meter,
                     "slot_start": datetime.fromtimestamp(v.slot_start_s, JST).isoformat(),
                     "normal_raw": v.normal_raw, "reverse_raw": v.reverse_raw,
                     "source": v.source.name.lower(), "coefficient": batch.scale.coefficient,
                     "unit_code": batch.scale.unit_code, "digits": batch.scale.digits})  # fmt: skip
    return [json.dumps(d).encode() for d in docs]


def mqtt_publish_bytes(topic: str, payload_len: int) -> int:
    """A whole MQTT 3.1.1 PUBLISH at QoS 1: fixed header byte, remaining length (1-4
    bytes), topic length (2) and topic, packet id (2), payload. MQTT 5 adds 1 (no
    properties)."""
    remaining = 2 + len(topic.encode()) + 2 + payload_len
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16_384 else 3
    return 1 + length_bytes + remaining


# -- the table ------------------------------------------------------------------------------


@dataclass
class Day:
    batches: int = 0
    cbor_payload: int = 0
    cbor_mqtt: int = 0
    json_payload: int = 0
    json_mqtt: int = 0


def one_day(house: House, policy: Policy) -> Day:
    rng = random.Random(policy.name)
    start = int(DAY.timestamp())
    day = Day()
    for i, at in enumerate(range(start, start + 86_400, policy.batch_s)):
        batch = batch_for(house, policy, at, SEQ + i, rng)
        payload = encode(batch)
        day.batches += 1
        day.cbor_payload += len(payload)
        day.cbor_mqtt += mqtt_publish_bytes(READINGS_TOPIC, len(payload))
        for doc in naive_json_readings(batch):
            day.json_payload += len(doc)
            day.json_mqtt += mqtt_publish_bytes(READINGS_TOPIC, len(doc))
    return day


def kib(n: float) -> str:
    return f"{n / 1024:,.0f} KiB"


def policy_rows(house: House) -> list[Row]:
    rows: list[Row] = []
    for policy in POLICIES:
        day = one_day(house, policy)
        month = DAYS_PER_MONTH
        rows.append((
            policy.name,
            f"{day.cbor_payload / day.batches:,.0f}",
            f"{day.cbor_mqtt / day.batches:,.0f}",
            kib(day.cbor_payload * month),
            kib(day.cbor_mqtt * month),
            kib(day.json_mqtt * month),
            f"{day.json_mqtt / day.cbor_mqtt:.1f}x",
        ))  # fmt: skip
    return rows


def breakdown(payload: bytes) -> list[Row]:
    """Bytes of each part of an encoded batch (canonical CBOR re-encodes part by part)."""
    body = cbor2.loads(payload)
    size = lambda x: len(cbor2.dumps(x, canonical=True))  # noqa: E731
    rows: list[Row] = [(f"envelope: array header, type 1, version {body[1]}", "3")]
    names = ("seq", "meter", "instant", "fixed", "scale")
    parts = ("t0_s", "step_s", "times", "power_w", "current_r_da", "current_t_da")
    fixed_parts = ("slot0_s", "slots", "normal_raw", "reverse_raw", "source")
    for name, value in zip(names, body[2:], strict=True):
        if name in ("instant", "fixed") and value is not None:
            rows.append((f"{name}: array header", str(size([]))))
            for part, item in zip(parts if name == "instant" else fixed_parts, value,
                                  strict=True):  # fmt: skip
                rows.append((f"  {name}.{part}", str(size(item))))
        else:
            rows.append((name, str(size(value))))
    rows.append(("total", str(len(payload))))
    return rows


def print_table(rows: Sequence[Row]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                         strict=True)]  # fmt: skip
        print("  ".join(cells).rstrip())


def main() -> int:
    house = House()
    print(f"Uplink bytes per gateway, readings of one 3-wire PV meter on {DAY:%Y-%m-%d} "
          f"(simulated), month = {DAYS_PER_MONTH} days, topic {READINGS_TOPIC!r}")  # fmt: skip
    header: Row = ("policy", "B/batch", "+MQTT", "CBOR/month", "+MQTT/month",
                   "JSON/reading+MQTT", "ratio")  # fmt: skip
    print_table([header, *policy_rows(house)])

    batch = worked_batch()
    payload = encode(batch)
    docs = naive_json_readings(batch)
    json_array = json.dumps([json.loads(d) for d in docs]).encode()
    print()
    print(f"Worked example (docs/wire.md): {len(batch.instant)} samples + "
          f"{len(batch.fixed)} 30-minute value (normal and reverse), seq {batch.seq}")  # fmt: skip
    print_table([("part", "bytes"), *breakdown(payload)])
    print()
    publish = mqtt_publish_bytes(READINGS_TOPIC, len(payload))
    json_each = sum(mqtt_publish_bytes(READINGS_TOPIC, len(d)) for d in docs)
    print_table([
        ("same readings", "payload", "as MQTT PUBLISH QoS 1"),
        ("kenshin CBOR batch", str(len(payload)), str(publish)),
        ("naive JSON, one array", str(len(json_array)),
         str(mqtt_publish_bytes(READINGS_TOPIC, len(json_array)))),
        (f"naive JSON, {len(docs)} documents", str(sum(map(len, docs))), str(json_each)),
    ])  # fmt: skip
    print(f"MQTT around the CBOR batch: {publish - len(payload)} bytes; the PUBACK back: "
          f"{PUBACK_BYTES} bytes (downlink)")  # fmt: skip
    status = encode(heartbeat())
    print(f"Heartbeat (Status): {len(status)} bytes payload, "
          f"{mqtt_publish_bytes(STATUS_TOPIC, len(status))} as a PUBLISH")  # fmt: skip
    print(f"payload hex: {payload.hex()}")
    print()
    print("Demand response, one event for a home of 4 devices (12 Sets, restores included):")
    print_table(dr_rows())
    return 0


if __name__ == "__main__":
    sys.exit(main())
