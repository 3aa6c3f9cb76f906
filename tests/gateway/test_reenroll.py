"""Enroll once per agent process: every enrollment issues a new broker password (and, on
the server, an event and a credentials change), so a fleet re-enrolling at each
reconnect would storm the server at a broker restart. The agent keeps its credential in
memory and enrolls again only when the broker refuses it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from kenshin.gateway.agent import AgentOptions, GatewayAgent
from kenshin.gateway.identity import Identity
from tests.gateway.cloud import Cloud
from tests.support import eventually, run

SERIAL = "GW-R"


@contextlib.asynccontextmanager
async def agent_of(cloud: Cloud, tmp_path, reenroll_after=1000) -> AsyncIterator[GatewayAgent]:
    options = AgentOptions(
        queue_path=tmp_path / "q.db",
        reconnect_backoff_s=(0.05, 0.1),
        reenroll_after_failures=reenroll_after,  # by default: never for being unreachable
    )
    agent = GatewayAgent(Identity.generate(SERIAL, cloud.url), options)
    running = asyncio.create_task(agent.run_forever())
    try:
        yield agent
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def restart_broker(cloud: Cloud, *, moved: bool = False) -> None:
    await cloud.stop_broker()
    await cloud.start_broker(moved=moved)


async def connected(agent: GatewayAgent, times: int) -> None:
    """Connected and subscribed (a broker restarted before that costs a SUBACK timeout)."""
    await eventually(lambda: agent.state.connections >= times, timeout_s=10)


def test_reconnects_after_broker_restarts_reuse_the_enrollment(tmp_path):
    async def main() -> None:
        async with Cloud() as cloud, agent_of(cloud, tmp_path) as agent:
            await connected(agent, 1)
            for times in (2, 3):
                await restart_broker(cloud)
                await connected(agent, times)
            assert cloud.enrollments == 1
            assert cloud.logins[SERIAL] == 3

    run(main(), timeout_s=30)


def test_a_refused_credential_leads_to_exactly_one_new_enrollment(tmp_path):
    async def main() -> None:
        async with Cloud() as cloud, agent_of(cloud, tmp_path) as agent:
            await connected(agent, 1)
            cloud.passwords[SERIAL] = "rotated on the server"  # the old one is refused now
            await restart_broker(cloud)  # ... at the gateway's next CONNECT
            await connected(agent, 2)
            assert cloud.enrollments == 2
            # refused twice in a row, a backoff apart, before it enrolls again
            assert agent.state.errors["credential_refused"] == 2
            await restart_broker(cloud)  # the new credential is kept in turn
            await connected(agent, 3)
            assert cloud.enrollments == 2

    run(main(), timeout_s=30)


def test_one_refusal_alone_is_not_taken_for_a_revocation(tmp_path):
    """A broker whose auth backend fails under load answers "not authorized" once: the
    agent tries the same credential again instead of enrolling (a storm at the worst
    moment), and it is taken."""

    async def main() -> None:
        async with Cloud() as cloud, agent_of(cloud, tmp_path) as agent:
            await connected(agent, 1)
            cloud.refuse_next[SERIAL] = 1
            await restart_broker(cloud)
            await connected(agent, 2)
            assert cloud.refusals[SERIAL] == 1
            assert cloud.enrollments == 1
            assert agent.state.errors["credential_refused"] == 1

    run(main(), timeout_s=30)


def test_a_broker_unreachable_for_long_is_looked_up_again_once(tmp_path):
    """The broker moved (e.g. another port): after `reenroll_after_failures` failed connects
    in a row the agent asks the server once, and finds it."""

    async def main() -> None:
        async with Cloud() as cloud, agent_of(cloud, tmp_path, reenroll_after=3) as agent:
            await connected(agent, 1)
            await restart_broker(cloud, moved=True)
            await connected(agent, 2)
            assert cloud.enrollments == 2

    run(main(), timeout_s=30)


def test_the_first_connection_waits_as_long_as_the_enrollment_answer_says(tmp_path):
    """Admission control: a fleet enrolling together is told to connect one after another
    (server/devices/pacing.py); a gateway that connected at once would undo it."""

    async def main() -> None:
        async with Cloud() as cloud:
            cloud.connect_after_s = 0.6
            async with agent_of(cloud, tmp_path) as agent:
                await connected(agent, 1)
            waited = cloud.first_login_at[SERIAL] - cloud.enrolled_at[SERIAL]
            assert waited >= 0.55, waited  # the answer's delay (less the timer's grain)

    run(main(), timeout_s=30)
