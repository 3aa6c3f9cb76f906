"""The agent stops when told to, also when a cancellation meets a broker's answer.

Python 3.11's `asyncio.wait_for`, under aiomqtt's publish, returns the PUBACK that
arrives together with a cancellation and drops the cancellation: the heartbeat went on,
its task group waited for it, and stopping the agent hung for ever (seen in
test_reenroll under load)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kenshin.gateway.agent import AgentOptions, GatewayAgent
from kenshin.gateway.identity import Identity
from tests.support import run


class SwallowingClient:
    """A publish whose answer wins the race against the cancellation of its caller."""

    def __init__(self) -> None:
        self.published = 0

    async def publish(self, *args, **kwargs) -> None:
        asyncio.current_task().cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(1)  # as wait_for: the answer came, the cancellation is lost
        self.published += 1


def test_a_publish_that_swallowed_a_cancellation_still_ends_the_task(tmp_path):
    agent = GatewayAgent(
        Identity.generate("GW-C", "http://127.0.0.1:9"), AgentOptions(queue_path=tmp_path / "q")
    )
    client = SwallowingClient()

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await agent._publish(client, agent.status())
        assert client.published == 1

    run(main())
