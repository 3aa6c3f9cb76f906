"""Clean sessions (the cluster's default, docs/scaling.md): the broker keeps nothing for
an absent gateway, so the server sends a command again once it hears from the gateway
without the result (server/devices/commands.py `owed`). The agent's side of that
bargain: it speaks as soon as it is back, and a command that comes twice runs once
(gateway/commands.py `CommandMemory`)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kenshin.gateway import commands
from kenshin.gateway.agent import GatewayAgent
from kenshin.gateway.commands import CommandMemory
from kenshin.wire import Command, CommandResult, Settings
from tests.gateway.cloud import Cloud
from tests.gateway.test_reenroll import SERIAL, agent_of, connected, restart_broker
from tests.support import eventually, run


def test_a_command_that_comes_twice_runs_once_and_is_answered_twice(tmp_path, monkeypatch):
    ran: list[int] = []
    execute = commands.execute

    async def counted(command, *args, **kwargs):
        ran.append(command.id)
        return await execute(command, *args, **kwargs)

    monkeypatch.setattr(commands, "execute", counted)

    async def main() -> None:
        async with Cloud() as cloud:
            cloud.clean_session = True
            async with cloud.service() as service, agent_of(cloud, tmp_path) as agent:
                await connected(agent, 1)
                assert agent.enrollment.mqtt.clean_session
                command = Command(41, "apply_settings", 2**31 - 1, {})
                for copies in (1, 2):
                    await cloud.send(service, command, SERIAL)
                    await eventually(
                        lambda copies=copies: len(cloud.of(CommandResult)) == copies, timeout_s=10
                    )
                first, again = cloud.of(CommandResult)
                assert first == again and first.ok
                assert ran == [41]  # the copy was answered, not run again

    run(main(), timeout_s=30)


def test_back_on_a_clean_session_the_agent_speaks_at_once(tmp_path, monkeypatch):
    """Its settings applied, an agent has nothing to say until its next batch, maybe half
    an hour away: on a clean session it says it is back, so the server sends what it owes."""
    spoke_at: list[int] = []  # the connection each status went out on
    publish_status = GatewayAgent._publish_status

    async def noted(agent, client, status=None):
        spoke_at.append(agent.state.connections)
        await publish_status(agent, client, status)

    monkeypatch.setattr(GatewayAgent, "_publish_status", noted)

    async def main() -> None:
        async with Cloud() as cloud:
            cloud.clean_session = True
            async with agent_of(cloud, tmp_path) as agent:
                await connected(agent, 1)
                async with cloud.service() as service:
                    await cloud.send(service, Settings(1, 1_800_000_000, {}), SERIAL, retain=True)
                    await eventually(lambda: 1 in spoke_at and agent.state.settings, timeout_s=10)
                await restart_broker(cloud)
                await connected(agent, 2)
                await eventually(lambda: 2 in spoke_at, timeout_s=5)
            assert cloud.enrollments == 1

    run(main(), timeout_s=30)


@given(st.lists(st.integers(0, 200), max_size=400), st.integers(1, 50))
def test_the_memory_drops_copies_of_the_latest_commands_and_forgets_the_oldest(ids, size):
    memory, order = CommandMemory(size), []
    for command_id in ids:
        first, earlier = memory.arrived(command_id)
        assert first == (command_id not in order[-size:])
        if first:
            order = [i for i in order if i != command_id] + [command_id]
            memory.done(CommandResult(command_id, True, {"n": command_id}))
        else:
            assert earlier == CommandResult(command_id, True, {"n": command_id})
