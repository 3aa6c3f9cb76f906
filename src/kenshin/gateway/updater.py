"""The agent's side of updates: the `update` command, the health file, and what the
supervisor asks it to report.

The agent and its supervisor (`supervisor.py`, the process systemd runs) share files only,
each written whole with a rename:

- ``<state_dir>/health.json`` (the agent writes): its version, whether it came up on the
  broker in this run, its last good meter read. The watchdog judges a new version by it.
- ``<root>/switch-request.json`` (the agent writes): the version it downloaded, verified
  and unpacked, and asks to run.
- ``<root>/supervisor.json`` (the supervisor writes): the version meant to run, the trial
  under way, and the latest outcomes to report (``healthy``, ``rolled_back``), numbered;
  the agent reports each one it has not yet reported (``<state_dir>/update-reported``
  holds the last number whose Event the broker acknowledged), so ``rolled_back`` goes
  out from the old version once it runs again.

The agent downloads (the TUF client verifies, `kenshin.updates.client`), unpacks
(`kenshin.updates.install`) and asks; the supervisor switches, restarts and watches.
Trusted metadata stays in ``<state_dir>/tuf``, outside the install root, so it survives
every switch. Update work never stops the agent: it runs in its own task, and its errors
are reported as a ``failed`` state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kenshin.updates.client import UpdateClient, UpdateError
from kenshin.updates.install import Installer, InstallError
from kenshin.updates.integrity import INTEGRITY_EVENT, Drift, check_installed, trusted_release
from kenshin.updates.names import release_path
from kenshin.updates.states import UPDATE_EVENT, UpdateState, parse_update_args, state_detail
from kenshin.wire import Event

log = logging.getLogger(__name__)

HEALTH = "health.json"
REQUEST = "switch-request.json"
SUPERVISOR = "supervisor.json"
REPORTED = "update-reported"
KEEP_S = 1.0  # how often the health file and the supervisor's reports are looked at
SENT_WAIT_S = 30.0  # at most, for `installed` to reach the broker before the switch
INTEGRITY_EVERY_S = 86_400.0  # and at every start


@dataclass(frozen=True)
class UpdateSetup:
    """Where an agent run by the supervisor finds its install root and update channel."""

    install_root: Path
    state_dir: Path
    initial_root: Path  # the TUF root the gateway was installed with
    base_url: str  # the server's /updates


def read_json(path: Path) -> dict[str, Any] | None:
    """The object in `path`, or None if there is none (or it is not one)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Whole or not at all: a temporary file beside it, flushed, renamed over it."""
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as out:
        json.dump(data, out, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(out.name, path)


class AgentUpdates:
    """Owned by the agent: `command` answers `update`, `keep` runs beside the agent."""

    def __init__(self, setup: UpdateSetup, version: str, report: Callable[[Event], None]):
        self.setup, self.version, self._report = setup, version, report
        self.installer = Installer(setup.install_root)
        self._task: asyncio.Task | None = None
        self._working: str | None = None
        self._sending: dict[int, tuple[Event, int | None, asyncio.Event]] = {}
        self._queued_reports: set[int] = set()

    def _client(self) -> UpdateClient:
        return UpdateClient(self.setup.base_url, self.setup.state_dir, self.setup.initial_root)

    # -- the command --------------------------------------------------------------------------

    async def command(self, args: Any) -> dict[str, Any]:
        """The `update` command's answer; ValueError for a refusal (a failed result)."""
        version, delay_s = parse_update_args(args)
        if version == self.version:
            return {"already": version}
        if self._task is not None and not self._task.done():
            raise ValueError(f"an update to {self._working} is under way")
        trial = (read_json(self.setup.install_root / SUPERVISOR) or {}).get("trial")
        if trial:
            raise ValueError(f"the watchdog is still checking version {trial.get('version')}")
        try:  # an unknown version is refused now, not after the delay
            await asyncio.to_thread(self._lookup, version)
        except UpdateError as err:
            raise ValueError(f"{err.reason}: {err}") from None
        self._working = version
        self._task = asyncio.create_task(self._work(version, delay_s))
        return {"accepted": version}

    def _lookup(self, version: str) -> None:
        if self._client().refresh().get_targetinfo(release_path(version)) is None:
            raise ValueError(f"release {version} is not published (signed) on the server")

    async def _work(self, version: str, delay_s: int) -> None:
        try:
            await asyncio.sleep(delay_s)
            self._state(version, UpdateState.DOWNLOADING)
            have = self.installer.archive(self.version)
            fetched = await asyncio.to_thread(self._client().fetch_release, version, have)
            await asyncio.to_thread(self.installer.unpack, version, fetched.path)
            fetched.path.unlink(missing_ok=True)
            via = f"delta from {fetched.base}" if fetched.via == "delta" else "full"
            installed = self._state(version, UpdateState.INSTALLED, reason=via)
            await self._until_sent(installed)
            request = {"version": version, "from_version": self.version}
            write_json(self.setup.install_root / REQUEST, request)
            log.info("update %s installed (%s); the supervisor switches to it", version, via)
        except UpdateError as err:
            log.warning("update to %s refused: %s", version, err)
            self._state(version, UpdateState.FAILED, reason=f"{err.reason}: {err.what}")
        except (InstallError, OSError) as err:
            log.warning("update to %s not installed: %s", version, err)
            self._state(version, UpdateState.FAILED, reason=f"install: {err}")
        except Exception as err:  # a bug of ours: the server hears of it, the agent goes on
            log.exception("update to %s failed", version)
            self._state(version, UpdateState.FAILED, reason=f"{type(err).__name__}: {err}")

    def _state(self, version: str, state: UpdateState, *, reason: str = "") -> Event:
        detail = state_detail(version, state, from_version=self.version, reason=reason)
        return self._send(Event(UPDATE_EVENT, int(time.time()), detail))

    def _send(self, event: Event, report_id: int | None = None) -> Event:
        self._sending[id(event)] = (event, report_id, asyncio.Event())
        self._report(event)
        return event

    async def _until_sent(self, event: Event) -> None:
        entry = self._sending.get(id(event))
        if entry is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(entry[2].wait(), SENT_WAIT_S)

    def sent(self, event: Event) -> None:
        """The broker acknowledged `event` (the agent calls this for every Event)."""
        entry = self._sending.pop(id(event), None)
        if entry is None:
            return
        _, report_id, done = entry
        done.set()
        if report_id is not None:
            (self.setup.state_dir / REPORTED).write_text(str(report_id))

    # -- beside the agent ---------------------------------------------------------------------

    async def keep(self, health: Callable[[], tuple[bool, float | None]]) -> None:
        """Write the health file when it changes; report the supervisor's outcomes.
        `health()` is (came up on the broker in this run, last good read in epoch s)."""
        written = None
        watching = asyncio.create_task(self._watch_integrity())
        try:
            while True:
                written = self._keep_once(health, written)
                await asyncio.sleep(KEEP_S)
        finally:
            watching.cancel()

    def _keep_once(self, health: Callable[[], tuple[bool, float | None]], written: Any) -> Any:
        """One round of `keep`; the health last written."""
        connected, last_read = health()
        now = {
            "version": self.version,
            "pid": os.getpid(),
            "connected": connected,
            "last_good_read_s": last_read,
        }
        if now != written:
            with contextlib.suppress(OSError):
                write_json(self.setup.state_dir / HEALTH, now)
                written = now
        self._report_outcomes()
        return written

    # -- integrity ----------------------------------------------------------------------------

    async def _watch_integrity(self) -> None:
        """The running version's files checked at start and every `INTEGRITY_EVERY_S`;
        reported at start, whenever they drift (every check, while they do: an alarm),
        and when they are whole again."""
        reported_ok: bool | None = None
        while True:
            drift = await asyncio.to_thread(self.check_integrity)
            if drift is not None and (reported_ok is None or not drift.ok or not reported_ok):
                if not drift.ok:
                    log.error("installed files of %s drifted: %s", self.version, drift.detail())
                self._report(Event(INTEGRITY_EVENT, int(time.time()), drift.detail()))
                reported_ok = drift.ok
            await asyncio.sleep(INTEGRITY_EVERY_S)

    def check_integrity(self) -> Drift | None:
        """The running version against what was signed for it; None when the agent does
        not run from an install root (a developer's `kenshin gateway run`)."""
        if not self.installer.has(self.version):
            return None
        client = self._client()
        try:  # the newest verified metadata; offline, what was verified last
            client.refresh()
        except Exception as err:
            log.info("integrity check on the metadata verified last (%s)", err)
        try:
            signed = trusted_release(client.metadata_dir, self.version)
        except ValueError as err:
            return Drift(self.version, problem=str(err))
        return check_installed(self.setup.install_root, self.version, signed)

    def _report_outcomes(self) -> None:
        state = read_json(self.setup.install_root / SUPERVISOR) or {}
        try:
            done = int((self.setup.state_dir / REPORTED).read_text())
        except (OSError, ValueError):
            done = 0
        for entry in state.get("reports") or []:
            number = entry.get("id")
            if not isinstance(number, int) or number <= done or number in self._queued_reports:
                continue
            self._queued_reports.add(number)
            self._send(
                Event(UPDATE_EVENT, int(entry.get("at_s", time.time())), entry["detail"]), number
            )

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
