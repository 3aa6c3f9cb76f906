"""`kenshin broute ...`: a smart meter over Wi-SUN B-route through an SKSTACK IP dongle.

Only with certified equipment on a real meter; `kenshin sim dongle` gives a pty to try it on.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer

from .render import to_jsonable

app = typer.Typer(no_args_is_help=True, help="Read a smart meter over Wi-SUN B-route.")

Device = Annotated[str, typer.Option(help="Serial device of the dongle, e.g. /dev/ttyUSB0.")]
RouteBId = Annotated[
    str,
    typer.Option("--id", envvar="KENSHIN_BROUTE_ID", help="B-route ID (32 characters)."),
]
Password = Annotated[
    str,
    typer.Option(envvar="KENSHIN_BROUTE_PASSWORD", help="B-route password (12 characters)."),
]
Model = Annotated[
    str | None,
    typer.Option(help="bp35a1 or bp35c2 (default: probe the dongle)."),
]
Baud = Annotated[int, typer.Option(help="Serial speed.")]


def _credential(what: str, value: str, length: int) -> None:
    """The power company's ID and password: checked before any radio work, never shown."""
    if len(value) != length:
        _fail(f"the B-route {what} must be {length} characters; {len(value)} were given")
    if not value.isascii() or not value.isprintable() or " " in value:
        _fail(f"the B-route {what} must be printable ASCII without spaces")


def _config(device: str, route_b_id: str, password: str, model: str | None, baud: int, **kw):
    from kenshin.wisun.lines import Dialect
    from kenshin.wisun.session import BrouteConfig

    _credential("ID", route_b_id, 32)
    _credential("password", password, 12)
    dialect = None
    if model is not None:
        try:
            dialect = Dialect[model.upper()]
        except KeyError:
            raise typer.BadParameter(f"unknown model {model!r}: use bp35a1 or bp35c2") from None
    return BrouteConfig(device, route_b_id, password, dialect=dialect, baudrate=baud, **kw)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def scan(
    device: Device,
    route_b_id: RouteBId,
    password: Password,
    model: Model = None,
    baud: Baud = 115200,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Scan for the meter's PAN, widening the duration, and print what answered."""
    from kenshin.wisun.session import BrouteSession, LinkDown

    config = _config(device, route_b_id, password, model, baud)

    async def run() -> list[dict[str, Any]]:
        session = BrouteSession(config, on_datagram=lambda _: None)
        try:
            found = await session.survey()
            return [
                {
                    **to_jsonable(pan),
                    "rssi_dbm": round(0.275 * pan.lqi - 104.27, 1),
                    "dialect": session.status.dialect,
                }
                for pan in found
            ]
        finally:
            await session.close()

    try:
        pans = asyncio.run(run())
    except LinkDown as err:
        _fail(err.reason)  # not its "next try in ...": this command does not try again
    except OSError as err:
        _fail(str(err))
    if as_json:
        typer.echo(json.dumps(pans, indent=2))
    else:
        for pan in pans:
            typer.echo(
                f"channel {pan['channel']} PAN {pan['pan_id']:04X} meter {pan['mac']} "
                f"LQI {pan['lqi']} ({pan['rssi_dbm']} dBm)"
            )
    if not pans:
        _fail("no meter answered; move the dongle nearer the meter and check B-route is on", 1)


@app.command()
def read(
    device: Device,
    route_b_id: RouteBId,
    password: Password,
    model: Model = None,
    baud: Baud = 115200,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per reading.")] = False,
    watch: Annotated[float | None, typer.Option(help="Read again every SECONDS.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 20.0,
) -> None:
    """Join the meter's PAN and read every property, typed, with units."""
    from kenshin.meter import MeterError, SmartMeterSession
    from kenshin.meter.wisun import WisunMeterLink

    from .meter import print_reading, read_meter

    config = _config(device, route_b_id, password, model, baud)

    async def run() -> None:
        async with WisunMeterLink(config, request_timeout_s=timeout) as link:
            session = SmartMeterSession(link)
            while True:
                reading = await read_meter(session)
                reading["link"] = {"value": to_jsonable(link.status), "unit": ""}
                print_reading(reading, as_json)
                if watch is None:
                    return
                if not as_json:
                    typer.echo("")
                await asyncio.sleep(watch)

    try:
        asyncio.run(run())
    except (MeterError, OSError) as err:
        # A link that is down says when it would try again; this command will not.
        _fail(getattr(err, "reason", None) or str(err))
    except KeyboardInterrupt:
        sys.exit(130)
