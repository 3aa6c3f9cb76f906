"""A gateway's page, for the field engineer at the door: its state, its meter link (live:
link state, LQI with its dBm and a day's history, uptime, last good read), its settings,
the commands run on it with their results in words, and its events.

Everything the page shows is formatted here, once, in the reader's language and in JST:
the page's HTML at first, then ``live.json`` (the same texts) that the page's script reads
every few seconds to update the status and the commands it follows. The panel's own
live-trace leases (`realtime` commands sent while someone watches a meter) are folded into
one line instead of filling the command list.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Connection, Row, func, select

from kenshin.echonet.classes import SMART_METER
from kenshin.wire.messages import mask_secrets

from .. import schema as s
from ..api import API_PREFIX
from ..deps import Conn, RowId
from ..devices import config
from ..devices.status import gateway_status
from ..schema import utcnow
from .i18n import Translator
from .pages import _flatten
from .queries import gateway_with_report, latest_events
from .rendering import PageProblem, PageRoute, SignedIn, render

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
LIVE_REFRESH_S = 10  # the page reads live.json this often (every 2 s while a command runs)
LEASE_WINDOW = timedelta(days=1)
SPARK_W, SPARK_H = 240, 48
GOOD_LQI, FAIR_LQI = 120, 60  # about -71 dBm and -88 dBm
_STATE_EVENTS = {f"gateway_{state}" for state in s.GATEWAY_STATES}


def _lqi_quality(lqi: int) -> str:
    return "good" if lqi >= GOOD_LQI else "fair" if lqi >= FAIR_LQI else "poor"


def _spark(history: list[dict], now: datetime) -> str:
    """SVG polyline points of the day's LQI reports (LQI 0..255 bottom to top), each held
    until the next report and the last one until now."""
    if not history:
        return ""
    start = now - timedelta(days=1)
    points: list[tuple[float, float]] = []

    def x(at: datetime) -> float:
        return round(max(0.0, (at - start).total_seconds()) / 86400 * SPARK_W, 1)

    def y(lqi: int) -> float:
        return round(SPARK_H - 2 - lqi / 255 * (SPARK_H - 4), 1)

    for point in history:
        if points:
            points.append((x(point["at"]), points[-1][1]))  # a step: held until now
        points.append((x(point["at"]), y(point["lqi"])))
    points.append((float(SPARK_W), points[-1][1]))
    return " ".join(f"{px},{py}" for px, py in points)


def status_view(t: Translator, status: dict, now: datetime) -> dict[str, Any]:
    """The status card's texts."""
    none = t("common.none")
    report = status["report"]
    history = status["lqi_history"]
    view: dict[str, Any] = {
        "state": status["state"],
        "state_label": t("state." + status["state"]),
        "last_seen": t.datetime(status["last_seen_at"]),
        "last_good_read": t.datetime(status["last_good_read_at"]),
        "spark": _spark(history, now),
        "lqi_range": (
            t(
                "gw.lqi_range",
                low=min(p["lqi"] for p in history),
                high=max(p["lqi"] for p in history),
                count=len(history),
            )
            if history
            else t("gw.lqi_no_history")
        ),
        "report": None,
    }
    if report is None:
        return view
    lqi = report["lqi"]
    view["report"] = {
        "at": t.datetime(report["at"]),
        "link": report["link"],
        "link_label": t.get("link." + report["link"], report["link"]),
        "link_class": {"joined": "ok", "connecting": "", "reauthenticating": ""}.get(
            report["link"], "warn"
        ),
        "lqi": (
            t(
                "gw.lqi_value",
                lqi=lqi,
                dbm=t.number(report["rssi_dbm"], 1),
                quality=t("gw.quality_" + _lqi_quality(lqi)),
            )
            if lqi is not None
            else t("gw.lqi_ip")
        ),
        "queue_depth": t.number(report["queue_depth"]),
        "agent_version": report["agent_version"],
        "uptime": t.duration(report["uptime_s"]),
        "errors": ", ".join(
            f"{t.get('gw.error.' + name, name)} {t.number(count)}"
            for name, count in sorted(report["errors"].items())
        )
        or none,
    }
    return view


# -- commands ---------------------------------------------------------------------------


def _epc(value: Any) -> int | None:
    try:
        return int(value, 16) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        return None


def _property_name(t: Translator, epc: int) -> str:
    spec = SMART_METER.spec(epc)
    name = t.get(f"epc.{epc:02X}", spec.name if spec else "")
    return f"0x{epc:02X} {name}".strip()


def _value(t: Translator, epc: int, value: Any) -> str:
    """A property's value in words: W with separators, amperes per phase, a date, a unit
    of energy, a list; never JSON."""
    spec = SMART_METER.spec(epc)
    unit = spec.unit if spec else ""
    if value is None:
        return t("common.none")
    if isinstance(value, dict) and "r_da" in value:  # E8 currents
        phases = [("R", value.get("r_da")), ("T", value.get("t_da"))]
        return " / ".join(
            f"{name} {t.number(da / 10, 1)} A" for name, da in phases if da is not None
        )
    if isinstance(value, bool):
        return t("common.yes") if value else t("common.no")
    if isinstance(value, int | float):
        if unit in ("", "count"):
            return t.number(value, 0 if isinstance(value, int) else 1)
        digits = 0 if isinstance(value, int) else 1
        return f"{t.number(value, digits)} {t.get('gw.unit.' + unit, unit)}"
    if isinstance(value, str):
        try:
            return t.datetime(datetime.fromisoformat(value))
        except ValueError:
            return t.get(f"epc_value.{value}", value)
    if isinstance(value, list):
        return ", ".join(_value(t, -1, v) for v in value[:12]) + ("…" if len(value) > 12 else "")
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_value(t, -1, v)}" for k, v in list(value.items())[:8])
    return str(value)


def _at(t: Translator, seconds: Any) -> str:
    try:
        return t.datetime(datetime.fromtimestamp(float(seconds), UTC))
    except (TypeError, ValueError, OverflowError, OSError):
        return t("common.none")


def _args_text(t: Translator, name: str, args: dict) -> str:
    if name == "read_property" and (epc := _epc(args.get("epc"))) is not None:
        return _property_name(t, epc)
    if name == "backfill" and "from_s" in args:
        return t("gw.args_backfill", start=_at(t, args["from_s"]), end=_at(t, args.get("to_s")))
    if name == "realtime":
        return t(
            "gw.args_realtime",
            interval=t.number(args.get("interval_s", 0)),
            duration=t.number(args.get("duration_s", 0)),
        )
    return ""


def _result_text(t: Translator, name: str, result: dict) -> str:
    if name == "read_property" and (epc := _epc(result.get("epc"))) is not None:
        return f"{_property_name(t, epc)}: {_value(t, epc, result.get('value'))}"
    if name == "realtime" and "until_s" in result:
        return t("gw.result_until", until=_at(t, result["until_s"]))
    if name == "backfill" and "slots" in result:
        return t("gw.result_slots", count=t.number(result["slots"]))
    if name == "rejoin":
        return t("gw.result_rejoined")
    if name == "restart":
        return t("gw.result_restarting")
    if name == "apply_settings":
        return t("gw.result_settings", version=result.get("settings_version", "—"))
    return ", ".join(f"{k}: {_value(t, -1, v)}" for k, v in result.items())


def command_view(t: Translator, row: Any) -> dict[str, Any]:
    row = row._mapping if isinstance(row, Row) else row
    name, state = row["name"], row["state"]
    if row.get("error"):
        result = row["error"]
    elif row.get("result"):
        result = _result_text(t, name, dict(row["result"]))
    else:
        result = ""
    return {
        "id": row["id"],
        "state": state,
        "created": t.datetime(row["created_at"]),
        "name": t.get("command." + name, name),
        "args": _args_text(t, name, dict(row.get("args") or {})),
        "state_label": t.get("command_state." + state, state),
        "result": result,
        "done": t.datetime(row["done_at"]) if row.get("done_at") else "",
    }


def _commands(conn: Connection, tenant_id: int, gateway_id: int, limit: int = 20) -> list[Row]:
    """The gateway's newest commands but the live-trace leases."""
    c = s.commands.c
    return list(
        conn.execute(
            select(s.commands)
            .where(c.tenant_id == tenant_id, c.gateway_id == gateway_id, c.name != "realtime")
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(limit)
        )
    )


def _leases(t: Translator, conn: Connection, tenant_id: int, gateway_id: int, now) -> str:
    """The live-trace leases of the last day, in one line (empty: none)."""
    c = s.commands.c
    count, last = conn.execute(
        select(func.count(), func.max(c.created_at)).where(
            c.tenant_id == tenant_id,
            c.gateway_id == gateway_id,
            c.name == "realtime",
            c.created_at >= now - LEASE_WINDOW,
        )
    ).one()
    return t("gw.leases", count=t.number(count), last=t.datetime(last)) if count else ""


def _live(t: Translator, conn: Connection, tenant_id: int, gateway_id: int) -> dict | None:
    now = utcnow()
    status = gateway_status(conn, tenant_id, gateway_id, now=now)
    if status is None:
        return None
    return {
        "status": status_view(t, status, now),
        "commands": [command_view(t, r) for r in _commands(conn, tenant_id, gateway_id)],
        "leases": _leases(t, conn, tenant_id, gateway_id, now),
    }


def _setting_text(t: Translator, value: Any) -> str:
    if value is None:
        return t("common.none")
    if isinstance(value, bool):
        return t("common.yes") if value else t("common.no")
    if isinstance(value, int | float):
        return t.number(value, 0 if float(value).is_integer() else 1)
    if isinstance(value, list | tuple):
        return ", ".join(_setting_text(t, v) for v in value) or t("common.none")
    return str(value)


@router.get("/gateways/{gateway_id}")
def gateway_page(gateway_id: RowId, page: SignedIn, conn: Conn, request: Request) -> Response:
    gateway = gateway_with_report(conn, page.tenant_id, gateway_id)
    if gateway is None:  # another tenant's, or none at all: the same answer
        raise PageProblem(404, "error.not_found")
    live = _live(page.t, conn, page.tenant_id, gateway_id)
    settings = config.effective_settings(conn, gateway, request.app.state.credential_box, now_s=0)
    events = latest_events(conn, page.tenant_id, gateway_id=gateway_id, limit=50)
    client = {
        "api": f"{API_PREFIX}/gateways/{gateway_id}/commands",
        "live": f"/gateways/{gateway_id}/live.json?lang={page.t.lang}",
        "refresh_s": LIVE_REFRESH_S,
        "lang": page.t.lang,
        "messages": page.t.messages("command.") | page.t.messages("command_state."),
    }
    rows = _flatten(mask_secrets(dict(settings.values))) if settings else []
    return render(
        page,
        "gateway.html",
        gateway=gateway,
        live=live,
        settings_version=settings.version if settings else None,
        settings_rows=[
            (name, str(value) if name.endswith("port") else _setting_text(page.t, value))
            for name, value in rows
        ],
        state_history=[e for e in events if e.code in _STATE_EVENTS],
        events=events,
        client=client,
        spark=(SPARK_W, SPARK_H),
    )


@router.get("/gateways/{gateway_id}/live.json")
def gateway_live(gateway_id: RowId, page: SignedIn, conn: Conn) -> Response:
    """The status card's and the command list's texts, for the page's script."""
    live = _live(page.t, conn, page.tenant_id, gateway_id)
    if live is None:
        return JSONResponse({"detail": "no such gateway"}, status_code=404)
    return JSONResponse(live, headers={"Cache-Control": "no-store"})
