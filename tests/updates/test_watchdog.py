"""The watchdog's decisions (`kenshin.updates.watchdog`), sans I/O: the time is given."""

from __future__ import annotations

import pytest

from kenshin.updates.watchdog import Health, Healthy, Restart, RollBack, Rules, Trial, Watchdog

RULES = Rules(deadline_s=600, crash_limit=3, restart_s=(1, 2, 5), settle_s=60)
T0 = 1_800_000_000.0


def switched() -> Watchdog:
    watchdog = Watchdog(RULES)
    watchdog.switched("1.1", "1.0", T0)
    return watchdog


def test_a_new_version_passes_once_connected_with_a_meter_read_after_the_switch():
    watchdog = switched()
    assert watchdog.health(Health("1.0", True, T0 + 5), T0 + 5) is None  # the old one
    assert watchdog.health(Health("1.1", False, None), T0 + 5) is None  # up, not connected
    assert watchdog.health(Health("1.1", True, T0 - 1), T0 + 6) is None  # a read from before
    assert watchdog.health(Health("1.1", True, T0 + 7), T0 + 7) == Healthy("1.1", "1.0")
    assert watchdog.trial is None
    assert watchdog.tick(T0 + 10_000) is None  # passed: no deadline any more


@pytest.mark.parametrize(
    ("seen", "missing"),
    [
        (None, "never came up"),
        (Health("1.1", False, None), "never connected to the broker"),
        (Health("1.1", True, None), "read no meter"),
    ],
)
def test_past_the_deadline_it_rolls_back_saying_what_was_missing(seen, missing):
    watchdog = switched()
    if seen is not None:
        watchdog.health(seen, T0 + 1)
    assert watchdog.due_s(T0 + 100) == 500
    assert watchdog.tick(T0 + 599.9) is None
    decision = watchdog.tick(T0 + 600)
    assert isinstance(decision, RollBack) and (decision.version, decision.to) == ("1.1", "1.0")
    assert missing in decision.reason and "600 s" in decision.reason
    assert watchdog.trial is None and watchdog.tick(T0 + 601) is None


def test_crashes_in_a_row_roll_back_before_the_deadline():
    watchdog = switched()
    assert watchdog.exited(1, 0.5, T0 + 1) == Restart(1)
    assert watchdog.exited(1, 0.5, T0 + 3) == Restart(2)
    decision = watchdog.exited(-9, 0.5, T0 + 6)
    assert decision == RollBack("1.1", "1.0", "1.1 exited 3 times in a row (last exit code -9)")


def test_a_version_that_passed_is_restarted_never_rolled_back():
    watchdog = switched()
    watchdog.health(Health("1.1", True, T0 + 3), T0 + 3)
    pauses = [watchdog.exited(1, 1, T0 + 10 + i) for i in range(5)]
    assert pauses == [Restart(1), Restart(2), Restart(5), Restart(5), Restart(5)]
    assert watchdog.exited(1, 61, T0 + 100) == Restart(1)  # after a good long run: from 1 again
    assert watchdog.tick(T0 + 10_000) is None


def test_the_trial_survives_the_supervisors_restart_with_its_deadline_and_crashes():
    watchdog = switched()
    watchdog.exited(1, 0.5, T0 + 1)
    saved = watchdog.trial.to_dict()
    again = Watchdog(RULES, Trial.from_dict(saved))
    assert again.tick(T0 + 599) is None
    assert again.exited(1, 0.5, T0 + 2) == Restart(1)
    assert isinstance(again.exited(1, 0.5, T0 + 3), RollBack)  # the third in a row
    again = Watchdog(RULES, Trial.from_dict(saved))
    assert isinstance(again.tick(T0 + 600), RollBack)


def test_a_health_file_is_read_leniently():
    assert Health.from_dict({"version": "1", "connected": 1, "last_good_read_s": 5}) == Health(
        "1", True, 5.0
    )
    assert Health.from_dict({"version": "1", "last_good_read_s": "x"}) == Health("1")
    with pytest.raises(KeyError):
        Health.from_dict({})
