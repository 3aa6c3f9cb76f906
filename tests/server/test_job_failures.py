"""A periodic job that fails is counted and tried again at its next period; a database
that cannot be reached is one warning line a period (readyz reports the database), a bug
of ours a full traceback."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy.exc

from kenshin.server.jobs import Job, JobRunner
from tests.support import eventually, run


def _unreachable(engine, now) -> None:
    raise sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionError("connection refused"))


def _buggy(engine, now) -> None:
    raise KeyError("a bug")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_unreachable_database_is_one_line_and_a_bug_a_traceback(engine, caplog):
    runner = JobRunner(engine, [Job("down", 3600.0, _unreachable), Job("bug", 3600.0, _buggy)])

    async def scenario() -> None:
        await runner.start()
        try:
            await eventually(lambda: len(runner.failures) == 2, timeout_s=10)
        finally:
            await runner.stop()

    with caplog.at_level(logging.WARNING, logger="kenshin.server.jobs"):
        run(scenario())
    down = [r for r in caplog.records if "job down" in r.getMessage()]
    bug = [r for r in caplog.records if "job bug" in r.getMessage()]
    assert len(down) == 1 and down[0].levelno == logging.WARNING and not down[0].exc_info
    assert "database is unreachable (connection refused)" in down[0].getMessage()
    assert len(bug) == 1 and bug[0].levelno == logging.ERROR and bug[0].exc_info
    assert runner.failures == {"down": 1, "bug": 1}
