"""The watchdog's decisions, sans I/O: after a switch, is the new version good, or must the
old one come back? The supervisor (`kenshin.gateway.supervisor`) feeds it what it sees,
with the time, and does what it answers.

Rules (docs/updates.md):

- A switch starts a *trial* of the new version. It passes when the agent's health file
  says: this version, connected to the broker, and a good meter read since the switch.
- It fails when `deadline_s` pass without that (the reason says what was missing), or
  when the agent exits `crash_limit` times in a row before passing. A failed trial is a
  rollback to the version it came from.
- Outside a trial an agent that exits is started again after a growing pause
  (`restart_s`, the last one repeating; back to the first after `settle_s` of running):
  a version that passed is never rolled back for a later crash, which may be the
  meter's or the network's fault.

The state that must survive the supervisor's own restart is `Trial` (`to_dict` and
`from_dict`); times are epoch seconds, so a deadline holds across a reboot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Health", "Healthy", "Restart", "RollBack", "Rules", "Trial", "Watchdog"]


@dataclass(frozen=True)
class Rules:
    deadline_s: float = 600.0
    crash_limit: int = 3
    restart_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
    settle_s: float = 60.0


@dataclass(frozen=True)
class Health:
    """What the agent wrote in its health file."""

    version: str
    connected: bool = False  # came up on the broker in this run
    last_good_read_s: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Health:
        read = data.get("last_good_read_s")
        return cls(
            str(data["version"]),
            bool(data.get("connected")),
            float(read) if isinstance(read, int | float) else None,
        )


@dataclass
class Trial:
    version: str
    from_version: str
    started_s: float
    crashes: int = 0
    seen: Health | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("seen")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        return cls(
            str(data["version"]),
            str(data["from_version"]),
            float(data["started_s"]),
            int(data.get("crashes", 0)),
        )


@dataclass(frozen=True)
class Healthy:
    version: str
    from_version: str


@dataclass(frozen=True)
class RollBack:
    version: str  # the one that failed
    to: str  # the one to run again
    reason: str


@dataclass(frozen=True)
class Restart:
    after_s: float


class Watchdog:
    def __init__(self, rules: Rules, trial: Trial | None = None):
        self.rules = rules
        self.trial = trial
        self._restarts = 0

    def switched(self, version: str, from_version: str, now: float) -> Trial:
        self.trial = Trial(version, from_version, now)
        self._restarts = 0
        return self.trial

    def health(self, health: Health, now: float) -> Healthy | None:
        trial = self.trial
        if trial is None or health.version != trial.version:
            return None
        trial.seen = health
        read = health.last_good_read_s
        if health.connected and read is not None and read >= trial.started_s:
            self.trial = None
            return Healthy(trial.version, trial.from_version)
        return None

    def exited(self, code: int | None, ran_s: float, now: float) -> Restart | RollBack:
        """The agent ended (`code` as the process returned it) after `ran_s` seconds."""
        trial = self.trial
        if trial is not None:
            trial.crashes += 1
            if trial.crashes >= self.rules.crash_limit:
                self.trial = None
                return RollBack(
                    trial.version,
                    trial.from_version,
                    f"{trial.version} exited {trial.crashes} times in a row "
                    f"(last exit code {code})",
                )
        if ran_s >= self.rules.settle_s:
            self._restarts = 0
        steps = self.rules.restart_s
        pause = steps[min(self._restarts, len(steps) - 1)]
        self._restarts += 1
        return Restart(pause)

    def tick(self, now: float) -> RollBack | None:
        """A rollback when the trial's deadline has passed."""
        trial = self.trial
        if trial is None or now < trial.started_s + self.rules.deadline_s:
            return None
        self.trial = None
        seen = trial.seen
        if seen is None:
            missing = "never came up"
        elif not seen.connected:
            missing = "came up but never connected to the broker"
        else:
            missing = "connected but read no meter"
        return RollBack(
            trial.version,
            trial.from_version,
            f"{trial.version} {missing} within {self.rules.deadline_s:g} s",
        )

    def due_s(self, now: float) -> float | None:
        """Seconds until `tick` may decide, if a trial runs."""
        if self.trial is None:
            return None
        return max(0.0, self.trial.started_s + self.rules.deadline_s - now)
