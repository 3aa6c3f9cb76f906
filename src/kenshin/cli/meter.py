"""`kenshin meter ...`: read a smart meter over ECHONET Lite/UDP."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer

from kenshin.echonet.classes import SMART_METER
from kenshin.echonet.frame import ECHONET_PORT

from .render import to_jsonable, to_text

app = typer.Typer(no_args_is_help=True, help="Read a low-voltage smart meter (0x028801).")

# Values are read in the AIF start-up order: facts first, then measurements.
READ_ORDER = (
    0x82,
    0x8A,
    0x8D,
    0xD3,
    0xD7,
    0xE1,
    0xEA,
    0xEB,
    0xE0,
    0xE3,
    0xE7,
    0xE8,
    0xE5,
    0xE2,
    0xE4,
    0xD0,
    0x80,
    0x88,
    0x97,
    0x98,
    0x9D,
    0x9E,
    0x9F,
)


async def read_meter(session) -> dict[str, Any]:
    """Every property the meter says it answers, typed, plus energy in Wh."""
    facts = await session.connect()
    epcs = [epc for epc in READ_ORDER if epc in facts.get_map or not facts.get_map]
    epcs += sorted(facts.get_map - set(epcs) - {0xEC, 0xEE})  # EC/EE need a selector first
    values = await session.get_values(epcs, required=False)
    out: dict[str, Any] = {}
    for epc in epcs:
        spec = SMART_METER.spec(epc)
        name = spec.name if spec else f"epc_{epc:02x}"
        out[name] = {
            "epc": f"0x{epc:02X}",
            "value": values.get(epc),
            "unit": spec.unit if spec else "",
        }
    # Wh exactly (an int, or a Decimal in 0.1 Wh steps): never a float's 4504700.0.
    normal, reverse = await session.cumulative_energy()
    out["cumulative_energy_normal_wh"] = {
        "value": normal.wh_exact if normal else None,
        "unit": "Wh",
    }
    if reverse is not None:
        out["cumulative_energy_reverse_wh"] = {"value": reverse.wh_exact, "unit": "Wh"}
    fixed = await session.fixed_time_energy()
    out["fixed_time_normal_wh"] = {
        "value": fixed.normal.wh_exact if fixed.normal else None,
        "unit": "Wh",
        "at": fixed.at,
    }
    return out


def print_reading(reading: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(to_jsonable(reading), ensure_ascii=False))
        return
    width = max(len(name) for name in reading)
    for name, item in reading.items():
        epc = item.get("epc", "")
        at = f" at {item['at'].isoformat()}" if "at" in item else ""
        typer.echo(f"{epc:>4}  {name:<{width}}  {to_text(item['value'], item['unit'])}{at}")


def _nothing_listens(host: str, port: int, wait_s: float) -> str | None:
    """Ask the node profile for its maker code from a connected UDP socket: an ICMP port
    unreachable then shows as ConnectionRefusedError at once, where the client's shared
    socket would wait out every retry. Why, or None (an answer, or silence: the read
    proper decides)."""
    import socket

    from kenshin.echonet.frame import CONTROLLER, ESV, NODE_PROFILE, Frame, Property

    probe = Frame(0x4B53, CONTROLLER, NODE_PROFILE, ESV.GET, (Property(0x8A),)).to_bytes()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as err:
        return f"cannot resolve {host}: {err}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.settimeout(wait_s)
        try:
            sock.connect(address)
            sock.send(probe)
            sock.recv(2048)
        except ConnectionRefusedError:
            return f"no answer from {host}:{port}: nothing listens on that UDP port"
        except OSError:
            return None  # a timeout, or an error the read itself will report
    return None


@app.command()
def read(
    host: Annotated[str, typer.Option(help="The meter's (or simulator's) IP address.")],
    port: Annotated[int, typer.Option(help="Its ECHONET Lite UDP port.")] = ECHONET_PORT,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per reading.")] = False,
    watch: Annotated[float | None, typer.Option(help="Read again every SECONDS.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 5.0,
) -> None:
    """Read every property of the meter, typed, with units."""
    from kenshin.echonet.udp import EchonetClient
    from kenshin.meter import MeterError, SmartMeterSession, UdpMeterLink

    refused = _nothing_listens(host, port, min(timeout, 1.0))
    if refused:
        typer.echo(f"error: {refused}", err=True)
        raise typer.Exit(2)

    async def run() -> None:
        async with EchonetClient(
            host="0.0.0.0", port=0, remote_port=port, timeout_s=timeout, join_multicast=False
        ) as client:
            session = SmartMeterSession(UdpMeterLink(client, host, port))
            while True:
                print_reading(await read_meter(session), as_json)
                if watch is None:
                    return
                if not as_json:
                    typer.echo("")
                await asyncio.sleep(watch)

    try:
        asyncio.run(run())
    except MeterError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        sys.exit(130)
