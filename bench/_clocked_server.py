"""`kenshin server run` with the application's clock pinned to the query bench's day
(bench/api_load.py runs the server through this file).

The pin is made on import: uvicorn's workers and the background process are spawned, and
a spawned process imports its parent's main file again (as ``__mp_main__``), so every
process of the server reads the same pinned clock as `bench.queries.data_clock` gives.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.queries import pin_clock

pin_clock()

if __name__ == "__main__":
    from kenshin.cli.server import app

    app(["run", *sys.argv[1:]])
