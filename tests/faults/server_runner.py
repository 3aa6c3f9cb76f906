"""`kenshin server run` as a test can kill it, with its periodic jobs on the simulators'
compressed clock (gap repair must judge "an hour ago" in the meters' time).

KENSHIN_* variables configure it as they do the real server.
python -m tests.faults.server_runner START_ISO SPEED ORIGIN_EPOCH
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import uvicorn

from kenshin.server import security
from kenshin.server.app import create_app
from kenshin.server.settings import load_settings
from kenshin.sim.clock import ScaledClock


def main() -> None:
    start, speed, origin = sys.argv[1:4]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s server %(name)s: %(message)s")
    security._SCRYPT_N = 2**10  # test-friendly password hashing, as in every server test
    clock = ScaledClock(datetime.fromisoformat(start), speed=float(speed), origin=float(origin))
    settings = load_settings()
    app = create_app(settings, clock=lambda: clock.now().astimezone(UTC))
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
