"""When the gateway tells the server how it is: which changes are news, and how often.

A Status goes when something in it changes (checked every STATUS_CHECK_S, locally), else
once a day: every batch already tells the server the gateway is alive, and each Status
exchange costs ~250 B on the bill. Changes spend a token of a small bucket (STATUS_BURST,
one back every `status_refill_s`): a field engineer sees a link come up or an LQI move
within seconds, and a flapping link or LQI costs at most one Status per refill period.
Pure: times are passed in.
"""

from __future__ import annotations

from kenshin.wire import Status

STATUS_MAX_S = 24 * 3600
STATUS_CHECK_S = 2.0
STATUS_BURST = 5
STATUS_REFILL_S = 600.0
STATUS_GAP_S = 5.0  # changes closer than this go together, in one Status
LQI_STEP = 12  # an LQI this far from the one last sent is news (about 3 dB)
BACKLOG = 64  # readings queued: more is a backlog the server should hear of
STALL_FAILURES = 3  # reads failed in a row: the meter is reported as not answering


def backlog_level(depth: int) -> int:
    """The queue's depth as news: 0 for what a flush or two takes (it comes and goes with
    every sample), then which doubling above BACKLOG (a growing queue raises an alert)."""
    return 0 if depth < BACKLOG else (depth // BACKLOG).bit_length()


def status_changed(status: Status, sent: Status | None) -> bool:
    """What the server must hear about soon: not uptime, not every LQI wobble, not error
    counts going up (a new kind of error, yes), the queue only when it doubles."""
    if sent is None:
        return True
    if (status.lqi is None) != (sent.lqi is None):
        return True
    if status.lqi is not None and abs(status.lqi - sent.lqi) >= LQI_STEP:
        return True
    return (
        status.link != sent.link
        or status.settings_version != sent.settings_version
        or backlog_level(status.queue_depth) != backlog_level(sent.queue_depth)
        or set(status.errors) != set(sent.errors)
        or (status.last_good_read_s is None) != (sent.last_good_read_s is None)
    )


class StatusGate:
    """A token bucket for changed statuses: `burst` at once, then one per `refill_s`, never
    two within `gap_s`. Times are monotonic seconds, passed in (tests drive them)."""

    def __init__(self, burst: int = STATUS_BURST, refill_s: float = STATUS_REFILL_S) -> None:
        self.burst, self.refill_s = burst, refill_s
        self.tokens, self._at, self._last = float(burst), None, None

    def allow(self, now: float, *, gap_s: float | None = None) -> bool:
        """True (and a token spent) when a changed status may go now."""
        gap_s = STATUS_GAP_S if gap_s is None else gap_s
        if self._at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self._at) / self.refill_s)
        self._at = now
        if self.tokens < 1 or (self._last is not None and now - self._last < gap_s):
            return False
        self.tokens -= 1
        self._last = now
        return True
