"""Rate limits on what an attacker would repeat: logins, enrollment, password resets.

Each kind of request is counted per client address and per what it names (the account's
e-mail, the gateway's serial, the user whose password is reset), in a moving window (the
`limits` library, in this process's memory). Past a limit the request is answered 429
with ``Retry-After`` (seconds until the window lets one more through), before any
password hash is computed or any row read.

In memory: each process counts for itself, so with ``--workers N`` an address gets up to
N times the limit (docs/operations.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from .problems import PROBLEM_JSON, Problem, ProblemDetail
from .settings import Settings

__all__ = ["RATE_LIMITED", "RateLimits", "client_address"]


# For a route's `responses=`: its 429 (a problem, with Retry-After).
RATE_LIMITED: dict[int | str, dict] = {
    429: {
        "model": ProblemDetail,
        "description": "Too many attempts; Retry-After says in how many seconds to try again",
        "content": {PROBLEM_JSON: {}},
    }
}


def client_address(request: Request) -> str:
    """The client's address as the HTTP server saw it (uvicorn takes X-Forwarded-For from
    the proxies it trusts, ``forwarded_allow_ips``)."""
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True)
class _Rule:
    name: str
    items: list[RateLimitItem]


class RateLimits:
    """The server's limits, from its settings; one per application (``app.state``)."""

    def __init__(self, settings: Settings) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._rules = {
            name: _Rule(name, parse_many(getattr(settings, name)))
            for name in (
                "login_limit",
                "login_limit_per_client",
                "enroll_limit",
                "enroll_limit_per_client",
                "password_reset_limit",
                "password_reset_limit_per_client",
            )
        }

    def hit(self, *counted: tuple[str, str], what: str) -> None:
        """Count one request against each ``(rule, key)``; if any is past its limit, count
        none and raise a 429 problem saying `what` is limited."""
        waits = []
        for rule_name, key in counted:
            rule = self._rules[rule_name]
            for item in rule.items:
                if not self._limiter.test(item, rule.name, key):
                    reset = self._limiter.get_window_stats(item, rule.name, key).reset_time
                    waits.append(max(1, math.ceil(reset - time.time())))
        if waits:
            wait = max(waits)
            raise Problem(
                429,
                f"too many {what}; try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        for rule_name, key in counted:
            rule = self._rules[rule_name]
            for item in rule.items:
                self._limiter.hit(item, rule.name, key)

    def login(self, request: Request, email: str) -> None:
        self.hit(
            ("login_limit_per_client", client_address(request)),
            ("login_limit", email),
            what="login attempts",
        )

    def enrollment(self, request: Request, serial: str) -> None:
        self.hit(
            ("enroll_limit_per_client", client_address(request)),
            ("enroll_limit", serial),
            what="enrollment requests",
        )

    def password_reset(self, request: Request, user_id: int) -> None:
        self.hit(
            ("password_reset_limit_per_client", client_address(request)),
            ("password_reset_limit", str(user_id)),
            what="password resets",
        )
