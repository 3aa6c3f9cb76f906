"""A gateway agent in its own process on a shared simulated clock (for tests that kill it).

python -m tests.gateway.agent_runner IDENTITY QUEUE START_ISO SPEED ORIGIN_EPOCH
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import datetime
from pathlib import Path

from kenshin.gateway.agent import AgentOptions, GatewayAgent
from kenshin.gateway.identity import Identity
from kenshin.sim.clock import ScaledClock


def main() -> None:
    identity, queue, start, speed, origin = sys.argv[1:6]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s agent %(name)s: %(message)s")
    clock = ScaledClock(datetime.fromisoformat(start), speed=float(speed), origin=float(origin))
    agent = GatewayAgent(
        Identity.load(identity),
        AgentOptions(queue_path=Path(queue), reconnect_backoff_s=(0.5, 1, 2)),
        clock=clock,
    )
    asyncio.run(agent.run_forever())


if __name__ == "__main__":
    main()
