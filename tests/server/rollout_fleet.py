"""Simulated gateways for the rollout tests, lean at the ingest level: each is a serial
claimed by a tenant, takes the `update` commands the server's pushers would publish to
it (through the devices room's `commands.pending`, encoded and decoded with the wire
codec as over MQTT), and answers with real wire `Event`s (`update_state`) and `Status`
heartbeats through `ingest.handle_group`, as the MQTT runtime hands them over. No broker:
200 real MQTT clients plus a broker per test cost more than the rollout logic needs, and
everything from the ingest inward is the real path.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from kenshin.server import ingest
from kenshin.server.devices import commands, registry
from kenshin.wire import Command, Event, LinkState, Status, decode_publish, encode_publish

KEY = b"k" * 32


def claimed_gateways(engine: Engine, tenant_id: int, n: int, prefix: str = "GW") -> dict[int, str]:
    """`n` gateways made by the factory and claimed by the tenant: serial by id."""
    serials = [f"{prefix}-{i:04}" for i in range(n)]
    text = "serial,model,public_key,claim_code\n" + "".join(
        f"{sn},m,{base64.urlsafe_b64encode(os.urandom(32)).decode()},\n" for sn in serials
    )
    with engine.begin() as conn:
        report = registry.import_identities(conn, text, KEY, "system")
        assert report.added == n and not report.errors, report
        claimed = [
            registry.claim_gateway(conn, tenant_id, key=KEY, actor="system", serial=sn)
            for sn in serials
        ]
    return {g.id: g.serial for g in claimed}


@dataclass
class SimFleet:
    """The gateways' side. `fails(serial)`: whether the new version fails its health
    check on that gateway (the watchdog then rolls it back, as the gateway agent would)."""

    engine: Engine
    serials: dict[int, str]
    running: str = "1.0.0"
    fails: Callable[[str], bool] = lambda serial: False
    asked: dict[str, list[dict]] = field(default_factory=dict)  # serial -> update args

    def take_commands(self, now: datetime) -> int:
        """Every pending `update` command to one of ours, as its gateway receives it,
        and the gateway's whole update reported; how many."""
        with self.engine.begin() as conn:
            due = [(row, sn) for row, sn in commands.pending(conn) if row.name == "update"]
            for row, _ in due:
                commands.mark_sent(conn, row.id, now)
        for row, serial in due:
            _, message = decode_publish(*encode_publish(commands.as_message(row), serial))
            assert isinstance(message, Command) and message.name == "update"
            self.asked.setdefault(serial, []).append(dict(message.args))
            self._update(serial, dict(message.args), int(now.timestamp()))
        return len(due)

    def _update(self, serial: str, args: dict, at_s: int) -> None:
        version, bad = args["version"], self.fails(serial)
        steps = [("downloading", ""), ("installed", "")]
        if bad:
            steps += [("failed", "health check: no meter read"), ("rolled_back", "watchdog")]
        else:
            steps += [("healthy", "")]
        work = [
            encode_publish(
                Event("update_state", at_s, {"version": version, "state": state,
                                             "reason": reason, "from_version": self.running}),
                serial,
            )
            for state, reason in steps
        ]  # fmt: skip
        running = self.running if bad else version
        work.append(encode_publish(Status(at_s, running, 3600, LinkState.JOINED), serial))
        with self.engine.begin() as conn:
            outcomes = ingest.handle_group(conn, work)
        assert [o.kind for o in outcomes] == ["event"] * len(steps) + ["status"], outcomes
