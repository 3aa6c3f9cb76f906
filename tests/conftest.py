"""Settings for every test.

Hypothesis: no per-example deadline. Speed is measured in bench/, never asserted in unit
tests; on a loaded two-core machine a parser example can take 300 ms and would fail as
"flaky" for reasons that are not the parser's. Under CI the examples are derandomized,
so a CI run is repeatable.
"""

import os

from hypothesis import settings

settings.register_profile("kenshin", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "kenshin")
