"""Every operation of the API, every kind of principal: another tenant's ids give 404 or
403 and never a byte of its data; each role reaches exactly what it should; nobody
unauthenticated gets anything.

The operations are read from the OpenAPI document at test time, so a new endpoint is in
the matrix as soon as it exists, and fails it until someone decides its rules here: who
may call it (ROLES), with which body (BODIES), with which query values (QUERY), and, if it
uses something up, how to make a fresh one (FRESH).

Both tenants' fleets are built through the API itself (gateways imported by the platform
administrator and claimed, sites, meters, a command, users, keys, a webhook and its
delivery, a price), readings go through the real ingest, and alerts come from the real
rules, so that every series and list has the other tenant's data to leak.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.jst import JST
from kenshin.server import ingest
from kenshin.server.alerts.engine import run_rules
from kenshin.server.schema import utcnow
from kenshin.wire import FixedTimeValue, InstantSample, MeterScale, ReadingsBatch, encode_publish
from kenshin.wire.enrollment import b64encode

from .conftest import PASSWORD, bearer, login

# The least role each operation needs: viewer < operator < admin; "platform": platform
# administrators only; "public": no login (enrollment, login itself, health).
ROLES = {
    "GET /livez": "public",
    "GET /readyz": "public",
    "POST /api/v1/auth/login": "public",
    "POST /api/v1/auth/logout": "public",  # ends the session if there is one: 204 either way
    "GET /api/v1/auth/me": "viewer",
    "GET /api/v1/tenants": "platform",
    "GET /api/v1/quarantine": "platform",
    "POST /api/v1/tenants": "platform",
    "GET /api/v1/tenants/{tenant_id}": "platform",
    "PATCH /api/v1/tenants/{tenant_id}/retention": "platform",
    "POST /api/v1/users": "admin",
    "GET /api/v1/users": "admin",
    "GET /api/v1/users/{user_id}": "admin",
    "PATCH /api/v1/users/{user_id}": "admin",
    "POST /api/v1/api-keys": "admin",
    "GET /api/v1/api-keys": "admin",
    "GET /api/v1/audit": "admin",
    "GET /api/v1/api-keys/{key_id}": "admin",
    "DELETE /api/v1/api-keys/{key_id}": "admin",
    "POST /api/v1/enroll/challenge": "public",
    "POST /api/v1/enroll": "public",
    "POST /api/v1/gateways/import": "platform",
    "POST /api/v1/gateways/claim": "operator",
    "GET /api/v1/gateways": "viewer",
    "GET /api/v1/gateways/{gateway_id}": "viewer",
    "POST /api/v1/sites": "operator",
    "GET /api/v1/sites": "viewer",
    "PATCH /api/v1/sites/{site_id}": "operator",
    "POST /api/v1/homes/import": "operator",
    "POST /api/v1/meters": "operator",
    "GET /api/v1/meters": "viewer",
    "PATCH /api/v1/meters/{meter_id}": "operator",
    "POST /api/v1/meters/supply-points": "operator",
    "PATCH /api/v1/settings/default": "operator",
    "PATCH /api/v1/gateways/{gateway_id}/settings": "operator",
    "PUT /api/v1/gateways/{gateway_id}/tags": "operator",
    "DELETE /api/v1/gateways/{gateway_id}/broker-credential": "operator",
    "GET /api/v1/gateways/{gateway_id}/settings": "viewer",
    "GET /api/v1/gateways/{gateway_id}/status": "viewer",
    "GET /api/v1/gateways/{gateway_id}/series/{series}": "viewer",
    "POST /api/v1/gateways/{gateway_id}/commands": "operator",
    "GET /api/v1/commands/{command_id}": "viewer",
    "GET /api/v1/events": "viewer",
    "GET /api/v1/meters/{meter_id}/energy": "viewer",
    "GET /api/v1/meters/{meter_id}/slots": "viewer",
    "GET /api/v1/energy": "viewer",
    "GET /api/v1/energy/peak": "viewer",
    "GET /api/v1/energy/meters.csv": "viewer",
    "GET /api/v1/meters/{meter_id}/current": "viewer",
    "GET /api/v1/meters/{meter_id}/power": "viewer",
    "GET /api/v1/meters/{meter_id}/peaks": "viewer",
    "GET /api/v1/meters/{meter_id}/demand": "viewer",
    "GET /api/v1/settlement.csv": "viewer",
    "GET /api/v1/missing-slots": "viewer",
    "POST /api/v1/meters/{meter_id}/live": "viewer",  # watching is reading
    "POST /api/v1/meters/{meter_id}/live/stop": "viewer",
    "GET /api/v1/forecast": "viewer",
    "PUT /api/v1/procurement-plan": "operator",
    "PUT /api/v1/procurement-plan.csv": "operator",
    "GET /api/v1/imbalance": "viewer",
    "POST /api/v1/meters/{meter_id}/prices": "operator",
    "GET /api/v1/meters/{meter_id}/prices": "viewer",
    "DELETE /api/v1/meters/{meter_id}/prices/{price_id}": "operator",
    "GET /api/v1/meters/{meter_id}/sales": "viewer",
    "GET /api/v1/sites/{site_id}/weather": "viewer",
    "GET /api/v1/alerts": "viewer",
    "GET /api/v1/alerts/{alert_id}": "viewer",
    "POST /api/v1/alerts/{alert_id}/acknowledge": "operator",
    "POST /api/v1/alerts/{alert_id}/resolve": "operator",
    "GET /api/v1/alert-rules": "viewer",
    "PUT /api/v1/alert-rules/{rule}": "admin",
    "POST /api/v1/alert-subscriptions": "admin",
    "GET /api/v1/alert-subscriptions": "admin",
    "DELETE /api/v1/alert-subscriptions/{subscription_id}": "admin",
    "POST /api/v1/webhooks": "admin",
    "GET /api/v1/webhooks": "admin",
    "GET /api/v1/webhooks/{hook_id}": "admin",
    "PATCH /api/v1/webhooks/{hook_id}": "admin",
    "DELETE /api/v1/webhooks/{hook_id}": "admin",
    "POST /api/v1/webhooks/{hook_id}/rotate-secret": "admin",
    "POST /api/v1/webhooks/{hook_id}/ping": "admin",
    "GET /api/v1/webhooks/{hook_id}/deliveries": "admin",
    "POST /api/v1/webhook-deliveries/{delivery_id}/redeliver": "admin",
    "GET /api/v1/notices": "viewer",
    "POST /api/v1/notices": "admin",
    "PATCH /api/v1/notices/{notice_id}": "admin",
    "DELETE /api/v1/notices/{notice_id}": "admin",
    "POST /api/v1/rollouts": "operator",
    "GET /api/v1/rollouts": "viewer",
    "GET /api/v1/rollouts/{rollout_id}": "viewer",
    "GET /api/v1/rollouts/{rollout_id}/gateways": "viewer",
    "POST /api/v1/rollouts/{rollout_id}/advance": "operator",
    "POST /api/v1/rollouts/{rollout_id}/pause": "operator",
    "POST /api/v1/rollouts/{rollout_id}/resume": "operator",
    "POST /api/v1/rollouts/{rollout_id}/abort": "operator",
    "POST /api/v1/openadr/clients": "admin",
    "GET /api/v1/openadr/clients": "admin",
    "DELETE /api/v1/openadr/clients/{client_row_id}": "admin",
    "POST /api/v1/dr/events": "operator",
    "GET /api/v1/dr/events": "viewer",
    "GET /api/v1/dr/events/{event_id}": "viewer",
    "POST /api/v1/dr/events/{event_id}/cancel": "operator",
    "POST /api/v1/dr/events/{event_id}/confirm": "operator",
    "GET /api/v1/dr/events/{event_id}/live": "viewer",
    "GET /api/v1/dr/events/{event_id}/homes": "viewer",
    "POST /api/v1/dr/events/{event_id}/homes/{site_id}/opt-out": "operator",
    "GET /api/v1/dr/events/{event_id}/results": "viewer",
    "GET /api/v1/dr/events/{event_id}/results.csv": "viewer",
    "GET /api/v1/dr/rules": "viewer",
    "POST /api/v1/dr/rules": "operator",
    "DELETE /api/v1/dr/rules/{rule_id}": "operator",
}
RANK = {"viewer": 0, "operator": 1, "admin": 2}
# The path and query parameters a fleet has a value for (ids of its rows, and the like).
FLEET_PARAMETERS = frozenset({
    "tenant_id", "site_id", "gateway_id", "meter_id", "command_id", "user_id", "key_id",
    "hook_id", "delivery_id", "alert_id", "subscription_id", "price_id", "rule", "notice_id",
    "client_row_id",
    "rollout_id", "series", "event_id", "rule_id",
})  # fmt: skip
# Path parameters that name no row of a tenant (the same rule exists for every tenant).
SHARED_PATH_PARAMETERS = {"rule", "series"}


@dataclass(frozen=True)
class Csv:
    """A request body sent as text/csv."""

    text: str


def _identities_csv(codes: dict[str, str]) -> Csv:
    """The factory's file for new gateways with these claim codes."""
    rows = "".join(
        f"{serial},m,{b64encode(Identity.generate(serial, 'http://x').public_key)},{code}\n"
        for serial, code in codes.items()
    )
    return Csv("serial,model,public_key,claim_code\n" + rows)


# A body each operation with a request body accepts, from the caller's ids and a number
# unique to the call, so that what is tested is the tenant wall and the role, not
# validation.
BODIES: dict[str, Callable[[dict, int], Any]] = {
    "POST /api/v1/tenants": lambda ids, n: {"name": f"Tenant {n}", "kind": "retailer"},
    "PATCH /api/v1/tenants/{tenant_id}/retention": lambda ids, n: {"instant_retention_days": 400},
    "POST /api/v1/users": lambda ids, n: {
        "email": f"new{n}@{ids['domain']}", "password": PASSWORD, "role": "viewer"
    },
    "PATCH /api/v1/users/{user_id}": lambda ids, n: {"role": "viewer"},
    "POST /api/v1/api-keys": lambda ids, n: {"name": f"k{n}", "role": "viewer"},
    "POST /api/v1/gateways/import": lambda ids, n: _identities_csv({f"GW-X-{n}": new_claim_code()}),
    "POST /api/v1/gateways/claim": lambda ids, n: {
        "claim_code": ids["claim_code"], "site_id": ids["site_id"]
    },
    "POST /api/v1/sites": lambda ids, n: {"customer_id": f"NEW{n}", "service_code": f"pss{n:08}"},
    "POST /api/v1/meters": lambda ids, n: {
        "site_id": ids["site_id"], "gateway_id": ids["gateway_id"], "link": "udp",
        "udp_host": "127.0.0.1",
    },
    "PATCH /api/v1/meters/{meter_id}": lambda ids, n: {"supply_point": None},
    "PATCH /api/v1/sites/{site_id}": lambda ids, n: {"phone": f"03-{n:08}"},
    "POST /api/v1/homes/import": lambda ids, n: Csv(
        f"customer_id,service_code,link,udp_host\nHOME{n},pss9{n:07},udp,127.0.0.1\n"
    ),
    "POST /api/v1/meters/supply-points": lambda ids, n: Csv(
        f"meter_id,supply_point\n{ids['meter_id']},{n:022}\n"
    ),
    "PATCH /api/v1/settings/default": lambda ids, n: {"values": {}},
    "PATCH /api/v1/gateways/{gateway_id}/settings": lambda ids, n: {"values": {}},
    "PUT /api/v1/gateways/{gateway_id}/tags": lambda ids, n: {"tags": [f"batch-{n}"]},
    "POST /api/v1/gateways/{gateway_id}/commands": lambda ids, n: {"name": "restart"},
    "PUT /api/v1/procurement-plan": lambda ids, n: [
        {"slot_start": f"{ids['day']}T00:00", "wh": 1}
    ],
    "PUT /api/v1/procurement-plan.csv": lambda ids, n: Csv(f"date,slot,kwh\n{ids['day']},1,1\n"),
    "POST /api/v1/meters/{meter_id}/prices": lambda ids, n: {
        "yen_per_kwh": 10, "valid_from": ids["day"]
    },
    "PUT /api/v1/alert-rules/{rule}": lambda ids, n: {"params": {}},
    "POST /api/v1/alert-subscriptions": lambda ids, n: {"channel": "webhook"},
    "POST /api/v1/webhooks": lambda ids, n: {"url": "http://127.0.0.1:9/x", "kinds": ["event"]},
    "PATCH /api/v1/webhooks/{hook_id}": lambda ids, n: {"active": False},
    "POST /api/v1/webhooks/{hook_id}/rotate-secret": lambda ids, n: None,  # a random one
    "POST /api/v1/notices": lambda ids, n: {"kind": "failure", "title": f"notice {n}"},
    "PATCH /api/v1/notices/{notice_id}": lambda ids, n: {"body": f"update {n}"},
    "POST /api/v1/rollouts": lambda ids, n: {"version": f"9.{n}"},
    "POST /api/v1/rollouts/{rollout_id}/pause": lambda ids, n: {"reason": f"pause {n}"},
    "POST /api/v1/rollouts/{rollout_id}/abort": lambda ids, n: {"reason": f"abort {n}"},
    "POST /api/v1/openadr/clients": lambda ids, n: {"role": "ven", "name": f"ven-{n}"},
    "POST /api/v1/dr/events": lambda ids, n: _dr_event(f"dr {n}"),
    "POST /api/v1/dr/rules": lambda ids, n: _DR_RULE,
}  # fmt: skip


def _dr_event(name: str) -> dict:
    """A DR event tomorrow 17:00-18:00 JST."""
    tomorrow = datetime.now(JST).date() + timedelta(days=1)
    return {"name": name, "start": f"{tomorrow}T17:00", "end": f"{tomorrow}T18:00",
            "target_w": 500}  # fmt: skip


_DR_RULE = {"name": "evening", "threshold_kw": 1.5, "slots": [34, 35], "target_w": 300}

# Values for the query parameters operations require, from the day the data is on.
QUERY: dict[str, Callable[[date], str]] = {
    "from": lambda day: day.isoformat(),
    "to": lambda day: (day + timedelta(days=1)).isoformat(),
    "day": lambda day: day.isoformat(),
    "start": lambda day: f"{day.isoformat()}T00:00",
    "end": lambda day: f"{(day + timedelta(days=1)).isoformat()}T00:00",
}

# Operations that use up the row they name: each allowed call gets a fresh one, made by
# the tenant's administrator through the API.
_GONE = itertools.count()  # names of OpenADR clients made to be revoked
FRESH: dict[str, Callable[[Fleet], dict]] = {
    "DELETE /api/v1/openadr/clients/{client_row_id}": lambda fleet: {
        "client_row_id": fleet.make(
            "/api/v1/openadr/clients", {"role": "ven", "name": f"gone-{next(_GONE)}"}
        )
    },
    "POST /api/v1/gateways/claim": lambda fleet: {"claim_code": fleet.spare_codes.pop()},
    "DELETE /api/v1/api-keys/{key_id}": lambda fleet: {
        "key_id": fleet.make("/api/v1/api-keys", {"name": "gone", "role": "viewer"})
    },
    "DELETE /api/v1/meters/{meter_id}/prices/{price_id}": lambda fleet: {
        "price_id": fleet.make(
            f"/api/v1/meters/{fleet.ids['meter_id']}/prices",
            {"yen_per_kwh": 1, "valid_from": fleet.ids["day"]},
        )
    },
    "DELETE /api/v1/notices/{notice_id}": lambda fleet: {
        "notice_id": fleet.make("/api/v1/notices", {"kind": "info", "title": "gone"})
    },
    "DELETE /api/v1/alert-subscriptions/{subscription_id}": lambda fleet: {
        "subscription_id": fleet.make("/api/v1/alert-subscriptions", {"channel": "webhook"})
    },
    "DELETE /api/v1/webhooks/{hook_id}": lambda fleet: {
        "hook_id": fleet.make("/api/v1/webhooks", BODIES["POST /api/v1/webhooks"](fleet.ids, 0))
    },
    "DELETE /api/v1/dr/rules/{rule_id}": lambda fleet: {
        "rule_id": fleet.make("/api/v1/dr/rules", _DR_RULE)
    },
    # Revoking twice is 204 again: the same gateway serves every call.
    "DELETE /api/v1/gateways/{gateway_id}/broker-credential": lambda fleet: {},
}  # fmt: skip

# Answers besides 2xx that an allowed call may get: an alert acknowledged or resolved by
# an earlier caller cannot move there again (409, documented).
ALSO_ALLOWED = {
    "POST /api/v1/alerts/{alert_id}/acknowledge": {409},
    "POST /api/v1/alerts/{alert_id}/resolve": {409},
    # A rollout moved by an earlier caller (paused, aborted, at its last stage) cannot
    # make the same move again.
    "POST /api/v1/rollouts/{rollout_id}/advance": {409},
    "POST /api/v1/rollouts/{rollout_id}/pause": {409},
    "POST /api/v1/rollouts/{rollout_id}/resume": {409},
    "POST /api/v1/rollouts/{rollout_id}/abort": {409},
    # A DR event cancelled by an earlier caller (nobody opts out of it then); one that was
    # never a proposal.
    "POST /api/v1/dr/events/{event_id}/cancel": {409},
    "POST /api/v1/dr/events/{event_id}/confirm": {409},
    "POST /api/v1/dr/events/{event_id}/homes/{site_id}/opt-out": {409},
}

# Strings found only in one tenant's rows ({T}: its tag, {t}: in lower case).
MARKERS = (
    "{T}-CUSTOMER-7731", "{T}-ADDRESS-7731", "{T}-SITE-7731", "GW-{T}-", "{T}-METER-7731",
    "{t}-hook-7731", "@{t}.test", "{T}-KEY-7731",
)  # fmt: skip
SPARE_GATEWAYS = 8  # claims by every principal allowed to claim, in one tenant
SLOTS = 6  # 30-minute values per meter on the data's day
COUNTS_PER_SLOT = {"A": 3, "B": 5}  # each slot's energy, in the register's 0.1 kWh


# -- the operations, from the OpenAPI document ---------------------------------------------


@dataclass(frozen=True)
class Operation:
    key: str  # "GET /api/v1/sites"
    method: str
    path: str
    path_ids: tuple[str, ...]
    query: frozenset[str]
    required_query: frozenset[str]
    has_body: bool

    @property
    def role(self) -> str:
        return ROLES[self.key]

    @property
    def tenant_scoped(self) -> bool:
        """Acts on one tenant: its caller's, or the one a platform administrator names."""
        return "tenant_id" in self.query

    @property
    def id_filters(self) -> list[str]:
        """Query parameters naming a row (besides the tenant)."""
        return sorted(q for q in self.query if q.endswith("_id") and q != "tenant_id")

    @property
    def owned_path_ids(self) -> list[str]:
        return [p for p in self.path_ids if p not in SHARED_PATH_PARAMETERS]


_OPERATIONS: dict[tuple, list[Operation]] = {}  # every test's app has the same routes


def _operations(app) -> list[Operation]:
    """The app's operations, each with its rules decided here (else the test fails)."""
    routes = tuple(
        (getattr(r, "path", ""), tuple(sorted(getattr(r, "methods", ())))) for r in app.routes
    )
    if routes not in _OPERATIONS:  # building the OpenAPI document takes seconds
        _OPERATIONS[routes] = _read_operations(app)
    return _OPERATIONS[routes]


def _read_operations(app) -> list[Operation]:
    out, undecided = [], []
    for path, methods in app.openapi()["paths"].items():
        for method, spec in methods.items():
            key = f"{method.upper()} {path}"
            params = spec.get("parameters", [])
            op = Operation(
                key, method.upper(), path,
                tuple(p["name"] for p in params if p["in"] == "path"),
                frozenset(p["name"] for p in params if p["in"] == "query"),
                frozenset(p["name"] for p in params if p["in"] == "query" and p.get("required")),
                "requestBody" in spec,
            )  # fmt: skip
            if key not in ROLES:
                undecided.append(f"{key}: no entry in ROLES (who may call it?)")
            if op.has_body and key not in BODIES and ROLES.get(key) != "public":
                undecided.append(f"{key}: no entry in BODIES (a body it accepts)")
            if op.method == "DELETE" and key not in FRESH:
                undecided.append(f"{key}: no entry in FRESH (a row to delete per call)")
            undecided += [
                f"{key}: path parameter {{{p}}} is not one of the ids the fleets have"
                for p in op.path_ids if p not in FLEET_PARAMETERS
            ] + [
                f"{key}: required query parameter {q!r} has no value in QUERY"
                for q in op.required_query - set(QUERY)
            ] + [
                f"{key}: query parameter {q!r} names a row the fleets do not have"
                for q in op.id_filters if q not in FLEET_PARAMETERS
            ]  # fmt: skip
            out.append(op)
    assert not undecided, "decide how the matrix calls these operations:\n" + "\n".join(undecided)
    return out


# -- two tenants' fleets, built through the API ---------------------------------------------


@dataclass
class Fleet:
    """One tenant's rows, made through the API, and the strings only they contain."""

    tag: str
    tenant_id: int
    admin: TestClient  # the tenant's administrator, who made everything
    ids: dict[str, Any]
    spare_codes: list[str]
    keys: dict[str, str] = field(default_factory=dict)  # role -> API key

    @property
    def markers(self) -> tuple[str, ...]:
        return tuple(m.format(T=self.tag, t=self.tag.lower()) for m in MARKERS)

    def make(self, path: str, body: dict) -> int:
        """A new row through the API; its id."""
        return _created(self.admin.post(path, json=body))["id"]


def _created(response: Response, status: int = 201) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def _send(client: TestClient, method: str, url: str, body: Any, params: dict | None = None):
    """A request with `body` as JSON, or as text/csv if it is a `Csv`."""
    if isinstance(body, Csv):
        return client.request(
            method, url, content=body.text, headers={"content-type": "text/csv"}, params=params
        )
    return client.request(method, url, json=body, params=params)


def weather_file(path, day: date):
    """A weather source with one hour of `day` (for /sites/{site_id}/weather)."""
    path.write_text(f"time,irradiance_w_m2,temperature_c\n{day.isoformat()}T12:00,800,30\n")
    return path


def _send_readings(engine, serial: str, meter_id: int, day: date, counts_per_slot: int) -> None:
    """SLOTS 30-minute values from midnight (JST) of `day` and two instant powers a minute
    apart, through the ingest exactly as the MQTT runtime hands them over."""
    midnight = datetime.combine(day, time(), JST)
    fixed = tuple(
        FixedTimeValue(int((midnight + i * timedelta(minutes=30)).timestamp()),
                       1000 + i * counts_per_slot, 0)
        for i in range(SLOTS + 1)
    )  # fmt: skip
    now = int(datetime.now(UTC).timestamp())
    instant = (InstantSample(now - 120, 420, 21), InstantSample(now - 60, 430, 22))
    batch = ReadingsBatch(1, f"m{meter_id}", instant, fixed, MeterScale(1, 0x01, 6))
    with engine.begin() as conn:
        assert ingest.handle(conn, *encode_publish(batch, serial)).kind == "readings"


def build_fleet(engine, new_client, root: TestClient, tenant_id: int, tag: str, day: date) -> Fleet:
    """Tenant `tag`'s fleet, through the API (its admin is admin@{tag}.test; `root`, a
    platform administrator's client, imports the gateways), with data on `day`."""
    t = tag.lower()
    serial = f"GW-{tag}-7731"
    codes = {serial: new_claim_code()} | {
        f"GW-{tag}-SPARE{i}": new_claim_code() for i in range(SPARE_GATEWAYS)
    }
    report = _created(_send(root, "POST", "/api/v1/gateways/import", _identities_csv(codes)), 200)
    assert report["added"] == len(codes), report
    admin = login(new_client(), f"admin@{t}.test")
    fleet = Fleet(tag, tenant_id, admin, {"tenant_id": tenant_id, "day": day.isoformat(),
                                          "domain": f"{t}.test", "rule": "no_data",
                                          "series": "pv"},
                  [codes[s] for s in codes if s != serial])  # fmt: skip
    ids = fleet.ids
    ids["site_id"] = fleet.make("/api/v1/sites", {
        "customer_id": f"{tag}-CUSTOMER-7731", "service_code": "pss77310000",
        "address": f"{tag}-ADDRESS-7731", "name": f"{tag}-SITE-7731",
    })  # fmt: skip
    ids["claim_code"] = codes[serial]
    ids["gateway_id"] = fleet.make(
        "/api/v1/gateways/claim", {"claim_code": codes[serial], "site_id": ids["site_id"]}
    )
    ids["meter_id"] = fleet.make("/api/v1/meters", {
        "site_id": ids["site_id"], "gateway_id": ids["gateway_id"], "link": "udp",
        "udp_host": "127.0.1.1", "serial": f"{tag}-METER-7731",
    })  # fmt: skip
    ids["command_id"] = fleet.make(
        f"/api/v1/gateways/{ids['gateway_id']}/commands", {"name": "restart"}
    )
    ids["user_id"] = fleet.make(
        "/api/v1/users", {"email": f"extra@{t}.test", "password": PASSWORD, "role": "viewer"}
    )
    for role in RANK:
        fleet.make("/api/v1/users", {"email": f"matrix-{role}@{t}.test", "password": PASSWORD,
                                     "role": role})  # fmt: skip
        made = _created(admin.post("/api/v1/api-keys", json={"name": f"{tag}-KEY-7731-{role}",
                                                             "role": role}))  # fmt: skip
        fleet.keys[role] = made["key"]
    ids["key_id"] = fleet.make("/api/v1/api-keys", {"name": f"{tag}-KEY-7731", "role": "viewer"})
    ids["hook_id"] = fleet.make(
        "/api/v1/webhooks", {"url": f"http://127.0.0.1:9/{t}-hook-7731", "kinds": ["event"]}
    )
    ids["delivery_id"] = _created(admin.post(f"/api/v1/webhooks/{ids['hook_id']}/ping"), 202)["id"]
    ids["subscription_id"] = fleet.make("/api/v1/alert-subscriptions", {"channel": "webhook"})
    ids["price_id"] = fleet.make(
        f"/api/v1/meters/{ids['meter_id']}/prices", {"yen_per_kwh": 16, "valid_from": ids["day"]}
    )
    ids["notice_id"] = fleet.make(
        "/api/v1/notices", {"kind": "maintenance", "title": f"{tag}-NOTICE-7731"}
    )
    ids["rollout_id"] = fleet.make("/api/v1/rollouts", {"version": "1.0.0"})
    ids["client_row_id"] = fleet.make(
        "/api/v1/openadr/clients", {"role": "bl", "name": f"{tag}-OADR-7731"}
    )
    ids["event_id"] = fleet.make("/api/v1/dr/events", _dr_event(f"{tag}-DR-7731"))
    ids["rule_id"] = fleet.make("/api/v1/dr/rules", _DR_RULE)
    _send_readings(engine, serial, ids["meter_id"], day, COUNTS_PER_SLOT[tag])
    with engine.begin() as conn:  # a day on, the meter has been silent: no_data opens
        assert run_rules(conn, tenant_id, utcnow() + timedelta(days=1)).opened
    ids["alert_id"] = _created(admin.get("/api/v1/alerts"), 200)["items"][0]["id"]
    assert set(ids) >= FLEET_PARAMETERS, FLEET_PARAMETERS - set(ids)
    return fleet


# -- who calls ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    client: TestClient
    home: Fleet | None  # None: a platform administrator who names no tenant
    platform: bool = False  # a platform administrator (naming `home` with ?tenant_id=)

    def scope(self, op: Operation) -> dict[str, int]:
        if self.platform and self.home is not None and op.tenant_scoped:
            return {"tenant_id": self.home.tenant_id}
        return {}


@dataclass
class Matrix:
    operations: list[Operation]
    fleets: dict[str, Fleet]
    callers: list[Caller]
    day: date

    def other(self, fleet: Fleet) -> Fleet:
        return self.fleets["B" if fleet.tag == "A" else "A"]


_NUMBERS = itertools.count()  # unique names for what the calls create


def _call(client: TestClient, op: Operation, ids: dict, params: dict | None = None,
          required_only: bool = False) -> Response:  # fmt: skip
    """`op` as `client`, naming the rows in `ids`, with a body and query it accepts (the
    QUERY values of every parameter it takes, or only of those it requires)."""
    url = op.path.format(**{p: ids[p] for p in op.path_ids})
    day = date.fromisoformat(ids["day"])
    named = op.required_query if required_only else op.query
    query = {q: QUERY[q](day) for q in named if q in QUERY} | (params or {})
    body = BODIES[op.key](ids, next(_NUMBERS)) if op.has_body else None
    return _send(client, op.method, url, body, query)


@pytest.fixture
def matrix(app, engine, new_client, world, tmp_path) -> Matrix:
    from kenshin.server.analytics.generation import CsvWeather

    # As on a test installation: loopback webhook URLs allowed, and a weather source.
    app.state.settings = app.state.settings.model_copy(update={"webhooks_allow_private": True})
    day = datetime.now(JST).date() - timedelta(days=1)
    app.state.weather = CsvWeather(weather_file(tmp_path / "weather.csv", day))

    root = login(new_client(), "root@kenshin.test")
    fleets = {
        tag: build_fleet(engine, new_client, root, tenant_id, tag, day)
        for tag, tenant_id in (("A", world.tenant_a), ("B", world.tenant_b))
    }
    callers = []
    for fleet in fleets.values():
        for role in RANK:
            session = login(new_client(), f"matrix-{role}@{fleet.tag.lower()}.test")
            callers.append(Caller(f"{fleet.tag} user:{role}", role, session, fleet))
            keyed = new_client()
            keyed.headers.update(bearer(fleet.keys[role]))
            callers.append(Caller(f"{fleet.tag} key:{role}", role, keyed, fleet))
        callers.append(Caller(f"platform ?tenant_id={fleet.tag}", "admin", root, fleet, True))
    callers.append(Caller("platform, no tenant named", "admin", root, None, True))
    return Matrix(_operations(app), fleets, callers, day)


def _listed(response: Response) -> list:
    """The rows a listing answered with (a page's items)."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return []
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        return body["items"]
    return []


# -- the tests ------------------------------------------------------------------------------------


def _assert_walled(caller: Caller, theirs: Fleet, op: Operation, answer: Response,
                   listing_ok: bool = False) -> None:  # fmt: skip
    """`answer` is a 403 or 404 (or, for a listing narrowed to their row, an empty list)
    with nothing of `theirs` in it."""
    where = f"{caller.name} {op.key}: {answer.status_code} {answer.text[:300]}"
    assert answer.status_code < 500, where
    leaked = [m for m in theirs.markers if m in answer.text]
    assert not leaked, f"{where}\n  the other tenant's {leaked}"
    if listing_ok and answer.is_success:
        assert _listed(answer) == [], where
    else:
        assert answer.status_code in (403, 404), where


@pytest.mark.slow  # every endpoint, every principal
def test_another_tenants_rows_never_reach_any_principal(matrix: Matrix):
    calls = 0
    for caller in matrix.callers:
        if caller.home is None:
            continue  # naming no tenant: in the role test
        mine, theirs = caller.home, matrix.other(caller.home)
        for op in matrix.operations:
            if op.role == "public":
                continue
            if op.role == "platform":
                if not caller.platform:  # platform administrators reach every tenant
                    _assert_walled(caller, theirs, op, _call(caller.client, op, theirs.ids))
                    calls += 1
                continue
            scope = caller.scope(op)
            if op.owned_path_ids:  # the other tenant's rows by id
                ids = {**mine.ids, **{p: theirs.ids[p] for p in op.owned_path_ids}}
                _assert_walled(caller, theirs, op, _call(caller.client, op, ids, scope))
                calls += 1
            if op.tenant_scoped and not caller.platform:  # the other tenant by name
                params = {"tenant_id": theirs.tenant_id}
                _assert_walled(caller, theirs, op, _call(caller.client, op, mine.ids, params))
                calls += 1
            for name in op.id_filters:  # a listing narrowed to the other tenant's row
                answer = _call(caller.client, op, mine.ids, {**scope, name: theirs.ids[name]})
                _assert_walled(caller, theirs, op, answer, listing_ok=True)
                calls += 1
    assert calls >= 14 * 40, calls  # fourteen principals, every operation naming a row
    _ids_inside_bodies_are_walled_too(matrix)
    _tenant_wide_series_count_only_the_tenants_own_meters(matrix)


def _ids_inside_bodies_are_walled_too(matrix: Matrix) -> None:
    for fleet in matrix.fleets.values():
        theirs = matrix.other(fleet)
        operator = next(c for c in matrix.callers if c.name == f"{fleet.tag} user:operator")
        refused = [
            operator.client.post("/api/v1/meters", json=body)
            for body in (
                {"site_id": theirs.ids["site_id"], "link": "udp", "udp_host": "127.0.0.1"},
                {"site_id": fleet.ids["site_id"], "gateway_id": theirs.ids["gateway_id"],
                 "link": "udp", "udp_host": "127.0.0.1"},
            )
        ] + [
            operator.client.post("/api/v1/gateways/claim", json=body)
            for body in (  # a claimed gateway of theirs; a spare of ours onto their site
                {"serial": f"GW-{theirs.tag}-7731", "site_id": fleet.ids["site_id"]},
                {"claim_code": fleet.spare_codes[-1], "site_id": theirs.ids["site_id"]},
            )
        ]  # fmt: skip
        for answer in refused:
            assert answer.status_code in (404, 422), answer.text
            assert not any(m in answer.text for m in theirs.markers), answer.text
        spare = operator.client.post(  # the refused claim used nothing up
            "/api/v1/gateways/claim",
            json={"claim_code": fleet.spare_codes.pop(), "site_id": fleet.ids["site_id"]},
        )
        assert spare.status_code == 201, spare.text


def _tenant_wide_series_count_only_the_tenants_own_meters(matrix: Matrix) -> None:
    day = matrix.day.isoformat()
    for caller in matrix.callers:
        fleet = caller.home
        if fleet is None or (caller.role != "viewer" and not caller.platform):
            continue
        per_slot_wh = COUNTS_PER_SLOT[fleet.tag] * 100
        scope = {"tenant_id": fleet.tenant_id} if caller.platform else {}
        energy = caller.client.get("/api/v1/energy", params={"from": day, "to": day, **scope})
        assert energy.status_code == 200, energy.text
        assert energy.json()["total_wh"] == SLOTS * per_slot_wh, caller.name
        peak = caller.client.get("/api/v1/energy/peak", params={"day": day, **scope})
        assert peak.json()["wh"] == per_slot_wh, caller.name
        sheet = caller.client.get(
            "/api/v1/energy/meters.csv", params={"from": day, "to": day, **scope}
        )
        rows = sheet.text.splitlines()[1:]  # under the header: the tenant's one meter
        assert {row.split(",")[2] for row in rows} == {f"{fleet.tag}-CUSTOMER-7731"}, caller.name


@pytest.mark.slow  # every endpoint, every role
def test_each_role_reaches_exactly_its_operations(matrix: Matrix):
    calls = 0
    for caller in matrix.callers:
        fleet = caller.home or matrix.fleets["A"]  # naming no tenant: any ids will do
        others = tuple(m for f in matrix.fleets.values() if f is not caller.home
                       for m in f.markers)  # fmt: skip
        for op in matrix.operations:
            if op.role == "public" or op.key.startswith("POST /api/v1/auth/"):
                continue  # the session's own door: logging out would end the test's session
            if op.role == "platform":
                allowed, expected = caller.platform, {403}
            elif caller.home is None:
                allowed, expected = not op.tenant_scoped, {400}  # "name the tenant"
            else:
                allowed, expected = RANK[caller.role] >= RANK[op.role], {403}
            ids = fleet.ids
            if allowed and op.key in FRESH:
                ids = {**ids, **FRESH[op.key](fleet)}
            answer = _call(caller.client, op, ids, caller.scope(op))
            calls += 1
            where = f"{caller.name} {op.key}: {answer.status_code} {answer.text[:300]}"
            if allowed:
                ok = answer.is_success or answer.status_code in ALSO_ALLOWED.get(op.key, ())
                assert ok, where
            else:
                assert answer.status_code in expected, where
                assert answer.headers["content-type"].startswith("application/problem+json")
            if op.role != "platform":  # the platform's own lists name every tenant
                leaked = [m for m in others if m in answer.text]
                assert not leaked, f"{where}\n  another tenant's {leaked}"
    assert calls >= 15 * 60, calls  # fifteen principals, every operation but the doors


def test_nobody_unauthenticated_gets_anything(app, client):
    # Any ids do: who is asking is settled before what is asked for.
    ids = dict.fromkeys(FLEET_PARAMETERS, 1) | {
        "day": "2026-07-01", "domain": "a.test", "claim_code": "X", "rule": "no_data"
    }  # fmt: skip
    for op in _operations(app):
        if op.role == "public":
            continue
        answer = _call(client, op, ids)
        assert answer.status_code == 401, f"{op.key}: {answer.status_code} {answer.text[:200]}"
        assert answer.headers["content-type"].startswith("application/problem+json")


# -- what every answer looks like ----------------------------------------------------------------

_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")  # a time, not a bare date


def _times(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """(where, text) of every string in a JSON value that parses as a date and time."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _times(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _times(inner, f"{where}[{i}]")
    elif isinstance(value, str) and _TIME.match(value):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return
        yield where, value


def test_every_list_is_a_page_and_every_time_is_jst(matrix: Matrix):
    """docs/api.md's two rules, on every GET operation's answer over a fleet with data: a
    list is `{"items": [...], "next_cursor": ...}`, never a bare array; every time is ISO
    8601 in JST, `+09:00` (a platform administrator naming tenant A reaches them all)."""
    caller = next(c for c in matrix.callers if c.name == "platform ?tenant_id=A")
    fleet = matrix.fleets["A"]
    bare, not_jst, timed = [], [], set()
    for op in matrix.operations:
        if op.method != "GET":
            continue
        # With the data's day, and with the defaults (the audit log's are today's rows).
        for required_only in (False, True):
            answer = _call(caller.client, op, fleet.ids, caller.scope(op), required_only)
            assert answer.is_success, f"{op.key}: {answer.status_code} {answer.text[:300]}"
            if not answer.headers["content-type"].startswith("application/json"):
                continue  # CSV: times as JST text, said in its header (tests/metering)
            body = answer.json()
            if isinstance(body, list):
                bare.append(op.key)
            for where, text in _times(body, op.key):
                timed.add(op.key)
                if not text.endswith("+09:00"):
                    not_jst.append(f"{where}: {text}")
    assert not bare, "bare JSON arrays, not pages:\n" + "\n".join(sorted(set(bare)))
    assert not not_jst, "times not in JST (+09:00):\n" + "\n".join(not_jst)
    assert len(timed) >= 30, sorted(timed)  # the walk saw times in most answers
