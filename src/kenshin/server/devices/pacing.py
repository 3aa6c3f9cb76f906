"""Admission control for a fleet's first connections: each enrollment answer names a
delay before the gateway's first MQTT connection, so gateways enrolling together (a
factory roll-out, a whole fleet asking the server again after a cluster restart) reach
the broker at the rate it can take rather than all at once.

Why: on the RabbitMQ cluster a gateway's first connection creates its session's
replicated queue and each login is an HTTP call to this server. 20,000 gateways
connecting together kept the nodes busy with logins that timed out at 10 s and were
tried again, and almost nobody got in (docs/scaling.md). Paced at a rate the cluster
sustains, the same fleet connects in a known time.

`ConnectionPacer` is a pure schedule (time is passed in): the n-th gateway enrolled in
a burst gets the n-th free slot of ``1 / rate`` seconds; slots not taken are not saved
up (a quiet hour does not allow a burst later), and no delay is longer than
``max_delay_s`` (past it the schedule is full: later gateways share its last slot, which
the broker's own backoff then spreads).
"""

from __future__ import annotations

import threading

__all__ = ["ConnectionPacer"]


class ConnectionPacer:
    def __init__(self, rate_per_s: float, max_delay_s: float = 3600.0):
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must not be negative, got {max_delay_s}")
        self.interval_s = 1.0 / rate_per_s
        self.max_delay_s = max_delay_s
        self._next_free: float | None = None
        self._lock = threading.Lock()  # enrollment handlers run in a thread pool

    def delay_s(self, now: float) -> float:
        """The seconds the gateway enrolled at `now` (monotonic seconds) waits before it
        connects, and its slot taken."""
        with self._lock:
            slot = now if self._next_free is None else max(self._next_free, now)
            slot = min(slot, now + self.max_delay_s)
            self._next_free = slot + self.interval_s
            return slot - now
