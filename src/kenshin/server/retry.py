"""Retries of outgoing deliveries (alert e-mails, webhooks): one rule for when to try again.

After the n-th failed attempt the next comes `backoff[n - 1]` later; past the schedule's
end the delivery is given up ("dead"), which the caller records as an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

__all__ = ["after_failure"]


def after_failure(
    attempts: int, now: datetime, backoff: Sequence[timedelta]
) -> tuple[str, datetime | None]:
    """(state, next attempt) after `attempts` tries, the last of which failed."""
    if attempts > len(backoff):
        return "dead", None
    return "pending", now + backoff[attempts - 1]
