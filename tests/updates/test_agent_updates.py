"""The agent's side of updates (`kenshin.gateway.updater`) without a network: what the
`update` command refuses at once, the health file, and the supervisor's outcomes reported
until the broker has acknowledged them (at least once, across agent restarts)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kenshin.gateway.updater import (
    HEALTH,
    REPORTED,
    SUPERVISOR,
    AgentUpdates,
    UpdateSetup,
    read_json,
    write_json,
)
from kenshin.updates.states import UPDATE_EVENT, UpdateState, state_detail
from kenshin.wire import Event
from tests.support import eventually, run


def agent(tmp_path: Path, reported: list[Event]) -> AgentUpdates:
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    setup = UpdateSetup(root, state, state / "initial-root.json", "http://127.0.0.1:9/updates")
    return AgentUpdates(setup, "1.0", reported.append)


def test_the_command_refuses_at_once_what_it_cannot_do(tmp_path: Path):
    updates = agent(tmp_path, [])

    async def scenario():
        assert await updates.command({"version": "1.0", "delay_s": 5}) == {"already": "1.0"}
        with pytest.raises(ValueError, match="delay_s"):
            await updates.command({"version": "1.1", "delay_s": 86_401})
        trial = {"version": "0.9", "from_version": "0.8", "started_s": 1.0}
        write_json(updates.setup.install_root / SUPERVISOR, {"trial": trial})
        with pytest.raises(ValueError, match=r"still checking version 0\.9"):
            await updates.command({"version": "1.1"})
        write_json(updates.setup.install_root / SUPERVISOR, {"trial": None})
        with pytest.raises(ValueError, match="initial root"):  # no trusted root: no update
            await updates.command({"version": "1.1"})

    run(scenario())


def test_outcomes_are_reported_until_acknowledged_and_the_health_file_kept(tmp_path: Path):
    reported: list[Event] = []
    updates = agent(tmp_path, reported)
    rolled = state_detail("1.1", UpdateState.ROLLED_BACK, from_version="1.0", reason="r")
    healthy = state_detail("1.1", UpdateState.HEALTHY, from_version="1.0")
    write_json(
        updates.setup.install_root / SUPERVISOR,
        {"reports": [{"id": 1, "at_s": 5, "detail": healthy}, {"id": 2, "detail": rolled}]},
    )
    (updates.setup.state_dir / REPORTED).write_text("1")  # the first went out before

    async def scenario():
        keeper = asyncio.create_task(updates.keep(lambda: (True, 123.0)))
        try:
            await eventually(lambda: len(reported) == 1)
            assert reported[0].code == UPDATE_EVENT and reported[0].detail == rolled
            health = read_json(updates.setup.state_dir / HEALTH)
            assert health["version"] == "1.0" and health["connected"] is True
            assert health["last_good_read_s"] == 123.0
            updates._report_outcomes()  # the next look
            assert len(reported) == 1  # queued once, not again at each look
        finally:
            keeper.cancel()

    run(scenario())
    assert (updates.setup.state_dir / REPORTED).read_text() == "1"  # not acknowledged yet
    updates.sent(reported[0])
    assert (updates.setup.state_dir / REPORTED).read_text() == "2"
    # the next agent (any version) reports nothing again
    again: list[Event] = []
    agent(tmp_path, again)._report_outcomes()
    assert again == []
