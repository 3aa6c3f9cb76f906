"""``python -m kenshin.gateway``: the agent, as the supervisor starts it (`main.py`)."""

import sys

from kenshin.gateway.main import main

sys.exit(main())
