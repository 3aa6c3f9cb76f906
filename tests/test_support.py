"""The test helpers themselves: a hung test fails alone, and says where it hung."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests import support


def test_a_test_that_will_not_stop_when_cancelled_fails_and_says_where(monkeypatch):
    monkeypatch.setattr(support, "CANCEL_GRACE_S", 0.2)

    async def stubborn() -> None:
        while True:  # the bug in question: a loop that swallows its cancellation
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    with pytest.raises(TimeoutError, match=r"nor stop when cancelled(.|\n)*stubborn"):
        support.run(stubborn(), timeout_s=0.1)


def test_a_test_that_stops_when_cancelled_fails_as_timed_out():
    with pytest.raises(TimeoutError, match=r"did not finish in 0\.1 s$"):
        support.run(asyncio.sleep(10), timeout_s=0.1)
    assert support.run(asyncio.sleep(0, "done")) == "done"


def test_free_ports_lie_below_the_kernels_ephemeral_range_and_can_be_bound():
    """A port handed out to listen on later is not one the kernel gives outgoing
    connections meanwhile (they take ports from the ephemeral range only)."""
    import socket

    from kenshin.ports import _ephemeral_low, free_tcp_port, free_udp_port

    low = _ephemeral_low()
    for pick, kind in ((free_tcp_port, socket.SOCK_STREAM), (free_udp_port, socket.SOCK_DGRAM)):
        ports = {pick() for _ in range(20)}
        assert all(port < low for port in ports)
        assert len(ports) > 10  # random, so parallel tests rarely pick the same one
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", ports.pop()))
