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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the `browser` fixture (tests/web) drives Chromium: `make check`
    leaves those out by this marker."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
