"""What the server and a gateway say to each other about an update (issue 19): one command
and one event, with the names both sides import from here.

The server sends the command ``update`` with args ``{"version": <release version>,
"delay_s": <0..86400>}``: the gateway waits `delay_s` before downloading (the server spreads
a stage's downloads with it), answers the command at once (``{"accepted": version}``, or
``{"already": version}`` when it runs that version), then works in the background and
reports each step as an Event ``update_state`` with the detail of `state_detail`:

- ``downloading``, ``installed`` and ``failed`` come from the version that was running;
- ``healthy`` from the new version, once the watchdog saw it connected and reading;
- ``rolled_back`` from the old version again, after the watchdog brought it back, with the
  reason. In every detail `version` is the update's target and `from_version` the version
  it updates from (for ``rolled_back``: the version running again).

The server records a gateway's Event under its code prefixed ``gw_``: these are listed as
``gw_update_state`` (``GET /api/v1/events``). The standard library only (and `names`):
the server and the gateway both import this module.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from .names import TargetNameError, check_version

__all__ = [
    "MAX_DELAY_S",
    "UPDATE_COMMAND",
    "UPDATE_EVENT",
    "UpdateState",
    "parse_update_args",
    "state_detail",
    "update_args",
]

UPDATE_COMMAND = "update"
UPDATE_EVENT = "update_state"
MAX_DELAY_S = 86_400
REASON_MAX = 200  # characters of a reason on the wire


class UpdateState(StrEnum):
    DOWNLOADING = "downloading"
    INSTALLED = "installed"
    HEALTHY = "healthy"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


def update_args(version: str, delay_s: int = 0) -> dict[str, Any]:
    """The `update` command's args, checked as the gateway will."""
    args = {"version": version, "delay_s": delay_s}
    parse_update_args(args)
    return args


def parse_update_args(args: Any) -> tuple[str, int]:
    """(version, delay_s) of an `update` command's args; ValueError says what is wrong."""
    if not isinstance(args, dict) or not isinstance(args.get("version"), str):
        raise ValueError('update needs args.version, a release version such as "1.4.2"')
    try:
        version = check_version(args["version"])
    except TargetNameError as err:
        raise ValueError(str(err)) from None
    delay = args.get("delay_s", 0)
    if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= MAX_DELAY_S:
        raise ValueError(f"update's args.delay_s must be an integer of 0..{MAX_DELAY_S} seconds")
    return version, delay


def state_detail(
    version: str, state: UpdateState, *, from_version: str, reason: str = ""
) -> dict[str, str]:
    """The detail of an ``update_state`` Event."""
    return {
        "version": version,
        "state": UpdateState(state).value,
        "reason": reason[:REASON_MAX],
        "from_version": from_version,
    }
