"""A panel with a real gateway behind it, for the realtime trace: the whole server on a
port with its device side on (the embedded MQTT broker), and in a thread of its own a
real `GatewayAgent`, knowing only its identity file, reading a simulated ECHONET Lite
smart meter over UDP on 127.0.0.1. Nothing is mocked: the agent enrolls over HTTP, takes
its settings from the broker, and answers the page's realtime commands; its samples come
back through the broker and the ingest.

The gateway polls slowly on its own (every 10 minutes, batches once per half hour), so
the samples the page draws are the realtime ones, sent because a person is watching.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from kenshin.gateway.agent import AgentOptions, GatewayAgent
from kenshin.gateway.identity import Identity, new_claim_code
from kenshin.ports import free_udp_port
from kenshin.server import schema as s
from kenshin.server import security
from kenshin.server.app import create_app
from kenshin.server.devices import config, registry
from kenshin.server.settings import Settings
from kenshin.sim.clock import ScaledClock
from kenshin.sim.fleet import SimFleet
from kenshin.wire.enrollment import b64encode
from tests.server.conftest import KEY, World

from .conftest import Panel, ServerThread

__all__ = ["LivePanel", "live_panel_fixture"]

SERIAL = "GW-LIVE1"
SLOW_POLL_S = 600  # the gateway's own pace: no sample of its own during a test


@dataclass
class LivePanel(Panel):
    agent: GatewayAgent | None = None
    meter_id: int = 0
    gateway_id: int = 0


class AgentThread:
    """The simulated meter and the gateway agent on an event loop of their own."""

    def __init__(self, identity: Identity, queue_path, meter_port: int) -> None:
        self.identity, self.queue_path, self.meter_port = identity, queue_path, meter_port
        self.agent: GatewayAgent | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gateway-agent", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # shown by the test that waits for the gateway
            self.error = err
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        clock = ScaledClock()  # the meter's clock: real time
        fleet = SimFleet(1, clock, base_host="127.0.0.1", port=self.meter_port, multicast=False)
        async with fleet:
            self.agent = GatewayAgent(self.identity, AgentOptions(queue_path=self.queue_path))
            running = asyncio.create_task(self.agent.run_forever())
            self._ready.set()
            await self._stop.wait()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            self.agent.queue.close()

    def __enter__(self) -> AgentThread:
        self.thread.start()
        self._ready.wait(30)
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=30)


def _wait(condition, what: str, timeout_s: float = 30.0, agent: AgentThread | None = None):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if agent is not None and agent.error is not None:
            raise AssertionError(f"the gateway agent stopped: {agent.error!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.1)


@pytest.fixture(scope="module", name="live_panel")
def live_panel_fixture(tmp_path_factory) -> Iterator[LivePanel]:
    workdir = tmp_path_factory.mktemp("live")
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'kenshin.db'}",
        secret_key=base64.b64encode(KEY).decode(),
        devices=True,  # the embedded MQTT broker, the ingest, the command pusher
        mqtt_port=0,
        jobs=False,
    )
    app = create_app(settings)
    with pytest.MonkeyPatch.context() as patch, ServerThread(app) as server:
        patch.setattr(security, "_SCRYPT_N", 2**10)
        engine = app.state.engine
        panel = LivePanel(server.url, engine, app.state.credential_box, World(engine))
        tenant = panel.world.tenant_a
        identity = Identity.generate(SERIAL, server.url)
        code = new_claim_code()
        meter_port = free_udp_port("127.0.0.1")
        factory_csv = (
            "serial,model,public_key,claim_code\n"
            f"{SERIAL},kenshin-gw,{b64encode(identity.public_key)},{code}\n"
        )
        key = app.state.device_key
        with engine.begin() as conn:
            assert registry.import_identities(conn, factory_csv, key, "system").added == 1
            site = registry.add_site(
                conn,
                tenant,
                "system",
                customer_id="LIVE-1",
                service_code="pss00000901",
                address="東京都千代田区ライブ1-1",
            )
            gateway = registry.claim_gateway(
                conn, tenant, key=key, actor="system", claim_code=code, site_id=site.id
            )
            meter = registry.add_meter(
                conn,
                tenant,
                panel.credential_box,
                "system",
                site_id=site.id,
                link="udp",
                gateway_id=gateway.id,
                udp_host="127.0.0.1",
                udp_port=meter_port,
            )
            config.put_settings(
                conn,
                tenant,
                None,
                {"poll": {"instant_interval_s": SLOW_POLL_S}, "heartbeat_s": 60},
                actor="system",
            )
        panel.meter_id, panel.gateway_id = meter.id, gateway.id
        app.state.device_service.wake()
        with AgentThread(identity, workdir / "queue.db", meter_port) as agent:
            panel.agent = agent.agent

            def configured() -> bool:
                with engine.connect() as conn:
                    applied = conn.execute(
                        select(s.gateways.c.settings_version_applied).where(
                            s.gateways.c.id == gateway.id
                        )
                    ).scalar()
                running = agent.agent.meter is not None and agent.agent.meter.poller.stats
                return applied is not None and bool(running and running.connected)

            _wait(configured, "the gateway enrolled, took its settings, reached its meter",
                  agent=agent)  # fmt: skip
            yield panel
