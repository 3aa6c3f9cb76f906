"""Between the dr room's door (`dr/dispatch.py`) and the wire: a `Dispatch` as the
`DrEvent` its gateway reads, and a gateway's `DrAck` / `DrReport` as the room's calls.
The room never sees the wire; the pushers (`runtime_push.py`) and the ingest
(`ingest.py`) call this.

- A home's target of 0 W in a slot (its share rounded down) is sent as 1 W: the wire asks
  a reduction of at least 1 W per slot it names, and leaving the slot out would read as
  "no ask" only to a planner that plans per slot, which the gateway's does not yet. A
  share over the wire's most (1 MW, far past any home) is sent as that most, not refused.
- The event's price (yen/kWh) goes to every half hour of the window, in yen/100.
- A `DrAck` `accepted` moves the home to `acknowledged`; `cancelled` answers a cancel and
  moves nothing (the home's state is what cancelled it). A `DrReport` moves it to `done`,
  or `failed` when not every Set was confirmed or the event did not run to its end.
"""

from __future__ import annotations

import json

from sqlalchemy import Connection, Row

from kenshin.jst import SLOT_S
from kenshin.wire import DrAck, DrAckState, DrEvent, DrReport
from kenshin.wire.checks import REDUCE_W_MAX
from kenshin.wire.codec import to_json

from .dr import dispatch

ACK_STATES = {
    DrAckState.ACCEPTED: "acknowledged",
    DrAckState.NO_DEVICES: "no_devices",
    DrAckState.REFUSED: "refused",
}


def as_message(d: dispatch.Dispatch) -> DrEvent:
    if d.cancelled:
        return DrEvent(d.event_id, d.start_s, d.end_s, cancelled=True)
    targets = tuple((slot, min(max(1, watts), REDUCE_W_MAX)) for slot, watts in d.targets)
    price = ()
    if d.price is not None:
        price = tuple((s, round(d.price * 100)) for s in range(d.start_s, d.end_s, SLOT_S))
    return DrEvent(
        d.event_id,
        d.start_s,
        d.end_s,
        targets=targets,
        shed=None if targets else d.shed,
        price=price,
        opt_out_deadline_s=min(d.opt_out_deadline_s, d.end_s),
    )


def on_ack(conn: Connection, gateway: Row, ack: DrAck) -> None:
    state = ACK_STATES.get(ack.state)
    if state is not None:
        dispatch.on_ack(conn, gateway.id, ack.event_id, state, ack.devices, ack.reason)


def on_report(conn: Connection, gateway: Row, report: DrReport) -> None:
    document = json.loads(to_json(report, indent=None))
    document["state"] = "done" if report.ok else "failed"
    dispatch.on_report(conn, gateway.id, report.event_id, document)
