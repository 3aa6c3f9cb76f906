"""Settings for every test.

Hypothesis: no per-example deadline. Speed is measured in bench/, never asserted in unit
tests; on a loaded two-core machine a parser example can take 300 ms and would fail as
"flaky" for reasons that are not the parser's. Under CI the examples are derandomized,
so a CI run is repeatable.
"""

import os

import pytest
from hypothesis import settings

settings.register_profile("kenshin", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "kenshin")


# First: xdist's worker reads the `xdist_group` marks in its own hook of this name and
# turns them into the "@group" suffix of node ids that `--dist loadgroup` schedules by;
# marks added after it are never seen (and every group was scattered over the workers).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers from what a test uses.

    - `browser`: it uses the `browser` fixture (tests/web), it drives Chromium; `make
      check` leaves those out, and
    - `postgresql`: the PostgreSQL half of a test run on both backends (`make check` runs
      the SQLite half).
    - `xdist_group`: tests sharing a module-scoped fixture (a panel with its server and
      fleet, a month of polling) go to one worker under ``--dist loadgroup``, which then
      builds it once instead of once on every worker that runs one of them.

    Then each group's tests are put next to each other (a stable sort, modules kept in
    their order): pytest's own reordering for several parametrized fixtures can interleave
    a module's SQLite and PostgreSQL tests, and a worker then tears a panel (and the
    10,000-meter tenant built on it, a minute) down and builds it again for each run of
    them.
    """
    groups: dict[pytest.Item, str] = {}
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
        params = getattr(item, "callspec", None)
        if params and "postgresql" in (params.params.get("backend"), params.params.get("panel")):
            item.add_marker(pytest.mark.postgresql)
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        shared = {n for n, defs in info.name2fixturedefs.items() if defs[-1].scope == "module"}
        if shared:
            # The module and its module fixtures' parameters (the panel's backend), not
            # which of them a test uses: they build on one another.
            chosen = sorted(f"{n}={v}" for n, v in (params.params if params else {}).items())
            chosen = [c for c in chosen if c.split("=")[0] in shared]
            group = "/".join([item.module.__name__, *chosen])
            item.add_marker(pytest.mark.xdist_group(group))
            groups[item] = group
    modules = {}
    for item in items:
        modules.setdefault(item.module.__name__ if item.module else "", len(modules))
    first = {}
    for position, item in enumerate(items):
        first.setdefault(groups.get(item, item.nodeid), position)
    items.sort(
        key=lambda item: (
            modules[item.module.__name__ if item.module else ""],
            first[groups.get(item, item.nodeid)],
        )
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    """With KENSHIN_CPU_LOG=<file>: one JSON line per test (set-up, call and tear-down)
    with its wall time and the CPU seconds of this worker and of the children it reaped
    (brokers, Chromium, clusters). Where a suite's CPU goes, which ``--durations`` (wall
    time, under parallel load) does not say."""
    log_path = os.environ.get("KENSHIN_CPU_LOG")
    if not log_path:
        yield
        return
    import json
    import time

    before, started = os.times(), time.monotonic()
    yield
    after = os.times()
    record = {
        "test": item.nodeid,
        "wall_s": round(time.monotonic() - started, 2),
        "cpu_s": round(after.user + after.system - before.user - before.system, 2),
        "children_cpu_s": round(
            after.children_user + after.children_system
            - before.children_user - before.children_system, 2
        ),
    }  # fmt: skip
    with open(log_path, "a") as log:
        log.write(json.dumps(record) + "\n")
