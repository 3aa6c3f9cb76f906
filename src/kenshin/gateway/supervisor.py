"""The supervisor: the process systemd runs (`kenshin gateway supervise`). It runs the agent
from the install root's `current` version, switches to a version the agent installed and
asks for, and rolls back by itself when the watchdog says so (`kenshin.updates.watchdog`).

It is a plain loop over files and one child process, polled a few times a second; it
never touches the network. Its own state, ``<root>/supervisor.json`` (written whole), says
which version is meant to run, the trial under way and the outcomes for the agent to
report (updater.py). Every step is written there *before* the links change, so after a
crash or SIGKILL at any point the next start finishes what was begun: the links are
brought to the version the file names (a switch finished, or a rollback), a trial goes on
with its deadline (epoch seconds), and an agent left running by the killed supervisor
(found by its pid file) is stopped before a new one starts: two agents of one gateway
would take each other's broker session.

The supervisor runs from the base install (the factory image), not from `current`: what
switches versions is never itself switched.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kenshin.updates.install import Installer, InstallError
from kenshin.updates.states import UpdateState, state_detail
from kenshin.updates.watchdog import Health, Healthy, RollBack, Rules, Trial, Watchdog

from .updater import HEALTH, REQUEST, SUPERVISOR, read_json, write_json

log = logging.getLogger(__name__)

PID = "agent.pid"
MAX_REPORTS = 8
AGENT_MODULE = "kenshin.gateway"


@dataclass
class SupervisorOptions:
    root: Path
    state_dir: Path
    agent_args: Sequence[str] = ()  # --identity, --queue, --initial-root ... for the agent
    rules: Rules = field(default_factory=Rules)
    poll_s: float = 0.2
    stop_s: float = 20.0  # SIGTERM, then this long, then SIGKILL
    python: str = sys.executable


class Supervisor:
    def __init__(self, options: SupervisorOptions, clock: Callable[[], float] = time.time):
        self.options, self.clock = options, clock
        self.installer = Installer(options.root)
        self.state: dict[str, Any] = {}
        self.watchdog = Watchdog(options.rules)
        self.child: subprocess.Popen | None = None
        self._started_at = 0.0
        self._start_at = 0.0
        self._health_seen: Any = None
        self._stopping = False

    @property
    def _state_path(self) -> Path:
        return self.options.root / SUPERVISOR

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        try:
            self.recover()
        except InstallError as err:
            log.error("%s", err)
            return 2
        try:
            while not self._stopping:
                self.step()
                time.sleep(self.options.poll_s)
        finally:
            self._stop_child()
        return 0

    def stop(self) -> None:
        self._stopping = True

    def recover(self) -> None:
        """At start: bring the links to what the state file says, stop an agent left
        running, drop half-done leftovers."""
        self._stop_stale_agent()
        self.state = read_json(self._state_path) or {}
        meant = self.state.get("current") or self.installer.current_version()
        if meant is None:
            raise InstallError(
                f"nothing installed in {self.options.root}: `kenshin gateway install` first"
            )
        trial = self.state.get("trial")
        if self.installer.current_version() != meant and self.installer.has(meant):
            log.warning("finishing the %s to %s", "switch" if trial else "rollback", meant)
            if trial:
                self.installer.switch(meant)
            else:
                self.installer.rollback(meant)
        self.state["current"] = self.installer.current_version()
        if trial and trial.get("version") == self.state["current"]:
            self.watchdog.trial = Trial.from_dict(trial)
        else:
            self.state["trial"] = None
        request = read_json(self.options.root / REQUEST) or {}
        self.installer.prune(also=[str(request.get("version", ""))])
        self._save()

    def step(self) -> None:
        now = self.clock()
        self._take_request(now)
        if self.child is not None and (code := self.child.poll()) is not None:
            ran_s = now - self._started_at
            self.child = None
            log.warning("the agent exited with %s after %.1f s", code, ran_s)
            decision = self.watchdog.exited(code, ran_s, now)
            self._save()
            if isinstance(decision, RollBack):
                self._roll_back(decision)
                return
            self._start_at = now + decision.after_s
        health = read_json(self.options.state_dir / HEALTH)
        if health is not None and health != self._health_seen:
            self._health_seen = health
            try:
                decision = self.watchdog.health(Health.from_dict(health), now)
            except (KeyError, TypeError, ValueError):
                decision = None
            if isinstance(decision, Healthy):
                log.info("version %s passed the watchdog", decision.version)
                self._outcome(decision.version, UpdateState.HEALTHY, decision.from_version)
        if (rollback := self.watchdog.tick(now)) is not None:
            self._roll_back(rollback)
            return
        if self.child is None and now >= self._start_at and not self._stopping:
            self._start_child()

    # -- switching and rolling back -----------------------------------------------------------

    def _take_request(self, now: float) -> None:
        path = self.options.root / REQUEST
        request = read_json(path)
        if request is None:
            return
        version = str(request.get("version", ""))
        running = self.installer.current_version()
        if version == running:  # taken before a crash: the trial is under way
            path.unlink(missing_ok=True)
            return
        if self.watchdog.trial is not None or not self.installer.has(version):
            log.warning("switch to %r refused: a trial runs, or it is not installed", version)
            path.unlink(missing_ok=True)
            return
        log.info("switching from %s to %s", running, version)
        trial = self.watchdog.switched(version, str(running), now)
        self.state.update(current=version, trial=trial.to_dict())
        self._save()  # first: a crash from here on finishes the switch at the next start
        (self.options.state_dir / HEALTH).unlink(missing_ok=True)
        self.installer.switch(version)
        path.unlink(missing_ok=True)
        self._stop_child()
        self._start_at = now

    def _roll_back(self, decision: RollBack) -> None:
        log.error("rolling back to %s: %s", decision.to, decision.reason)
        self._stop_child()
        if not self.installer.has(decision.to):
            log.error("version %s is gone: %s stays", decision.to, decision.version)
            self._start_at = self.clock() + self.options.rules.restart_s[-1]
            return
        self.state["current"] = decision.to
        self._outcome(
            decision.version, UpdateState.ROLLED_BACK, decision.to, reason=decision.reason
        )  # saved first: a crash from here on finishes the rollback at the next start
        (self.options.state_dir / HEALTH).unlink(missing_ok=True)
        self.installer.rollback(decision.to)
        self._start_at = self.clock()

    def _outcome(self, version: str, state: UpdateState, from_version: str, reason="") -> None:
        """Record it for the agent to report, and save (the trial is over)."""
        number = int(self.state.get("next_id", 1))
        detail = state_detail(version, state, from_version=from_version, reason=reason)
        entry = {"id": number, "at_s": int(self.clock()), "detail": detail}
        reports = [*self.state.get("reports", []), entry]
        self.state.update(trial=None, next_id=number + 1, reports=reports[-MAX_REPORTS:])
        self._save()

    def _save(self) -> None:
        trial = self.watchdog.trial
        self.state["trial"] = trial.to_dict() if trial else None
        write_json(self._state_path, self.state)

    # -- the agent process --------------------------------------------------------------------

    def _start_child(self) -> None:
        version = self.installer.current_version()
        if version is None:
            raise InstallError("current vanished")
        path = str(self.installer.directory(version))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (path, env.get("PYTHONPATH")) if p)
        # No bytecode caches in a version's directory: its files stay the signed ones, and
        # the integrity check (kenshin.updates.integrity) takes any new file for drift.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        argv = [
            self.options.python,
            "-m",
            AGENT_MODULE,
            *self.options.agent_args,
            "--install-root",
            str(self.options.root),
            "--state-dir",
            str(self.options.state_dir),
        ]
        self.child = subprocess.Popen(argv, env=env, cwd=self.options.state_dir)
        self._started_at = self.clock()
        (self.options.root / PID).write_text(str(self.child.pid))
        log.info("agent %s started (pid %d)", version, self.child.pid)

    def _stop_child(self) -> None:
        child, self.child = self.child, None
        if child is None:
            return
        child.terminate()
        try:
            child.wait(self.options.stop_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def _stop_stale_agent(self) -> None:
        """An agent that a killed supervisor left running (systemd would have killed it
        with the unit's control group; a supervisor run by hand, or killed alone, not)."""
        try:
            pid = int((self.options.root / PID).read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if AGENT_MODULE.encode() not in cmdline or str(self.options.root).encode() not in cmdline:
            return  # the pid was reused by something else
        log.warning("stopping agent %d left by an earlier supervisor", pid)
        for sig, wait_s in ((signal.SIGTERM, self.options.stop_s), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if not process_alive(pid):
                    return
                time.sleep(0.05)


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
