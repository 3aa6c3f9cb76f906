"""The metering tests use the server's fixtures: both backends, an app, two tenants."""

from tests.server.conftest import *  # noqa: F403
