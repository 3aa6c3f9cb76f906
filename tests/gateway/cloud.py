"""A small stand-in for the server, for tests of the agent's own behaviour: a real
enrollment endpoint over HTTP that counts enrollments (each issues a new broker password,
as the server's does), the embedded broker admitting exactly the current password, and a
service client that publishes settings and commands and collects what the gateway sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiomqtt

from kenshin.server.broker.access import Principal, PrincipalKind
from kenshin.server.broker.embedded import EmbeddedBroker
from kenshin.wire import decode_publish, encode_publish

SERVICE, SERVICE_PASSWORD = "svc", "svc secret"


class Cloud:
    def __init__(self) -> None:
        self.passwords: dict[str, str] = {}  # the gateway's current broker password
        self.enrollments = 0
        self.logins: dict[str, int] = {}  # accepted CONNECTs per gateway
        self.refusals: dict[str, int] = {}  # refused CONNECTs per gateway
        self.refuse_next: dict[str, int] = {}  # refuse this many, whatever the password
        self.connect_after_s = 0.0  # the admission delay each enrollment answer names
        self.clean_session = False  # what each enrollment answer tells of sessions
        self.enrolled_at: dict[str, float] = {}  # monotonic, the last enrollment's
        self.first_login_at: dict[str, float] = {}  # monotonic, after the last enrollment
        self.broker: EmbeddedBroker | None = None
        self.port = 0
        self.received: list[Any] = []  # decoded messages from gateways, in order
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"

    # -- enrollment (HTTP, in a thread: the agent calls it from one) -------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.endswith("/challenge"):
                    answer = {"challenge": secrets.token_urlsafe(8)}
                else:
                    answer = cloud._enroll(body["serial"])
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def _enroll(self, serial: str) -> dict:
        self.enrollments += 1
        self.passwords[serial] = secrets.token_urlsafe(12)
        self.enrolled_at[serial] = time.monotonic()
        self.first_login_at.pop(serial, None)
        mqtt = {"host": "127.0.0.1", "port": self.port, "tls": False, "username": serial,
                "connect_after_s": self.connect_after_s,
                "clean_session": self.clean_session}  # fmt: skip
        return {"gateway_id": serial, "mqtt": {**mqtt, "password": self.passwords[serial]}}

    # -- the broker ------------------------------------------------------------------------

    async def authenticate(self, username: str, password: str) -> Principal | None:
        if (username, password) == (SERVICE, SERVICE_PASSWORD):
            return Principal(SERVICE, PrincipalKind.SERVICE)
        glitch = self.refuse_next.get(username, 0) > 0  # an auth backend failing, say
        if glitch:
            self.refuse_next[username] -= 1
        if not glitch and password and self.passwords.get(username) == password:
            self.logins[username] = self.logins.get(username, 0) + 1
            self.first_login_at.setdefault(username, time.monotonic())
            return Principal(username, PrincipalKind.DEVICE)
        self.refusals[username] = self.refusals.get(username, 0) + 1
        return None

    async def start_broker(self, *, moved: bool = False) -> None:
        """On the same port as before, once there was one (a broker restart), unless
        `moved` (another port, which only a new enrollment tells the gateway)."""
        self.broker = EmbeddedBroker(self, port=0 if moved else self.port)
        await self.broker.start()
        self.port = self.broker.port

    async def stop_broker(self) -> None:
        if self.broker is not None:
            await self.broker.stop()

    @contextlib.asynccontextmanager
    async def service(self) -> AsyncIterator[aiomqtt.Client]:
        """The server's side: collects every message of every gateway into `received`."""
        async with aiomqtt.Client(
            "127.0.0.1", self.port, username=SERVICE, password=SERVICE_PASSWORD, timeout=5
        ) as client:
            await client.subscribe("k/+/d", qos=1)
            for kind in "ser":
                await client.subscribe(f"k/+/{kind}", qos=1)

            async def collect() -> None:
                async for message in client.messages:
                    self.received.append(decode_publish(str(message.topic), message.payload)[1])

            task = asyncio.create_task(collect())
            try:
                yield client
            finally:
                task.cancel()

    @staticmethod
    async def send(client: aiomqtt.Client, message: Any, gateway_id: str, retain=False) -> None:
        await client.publish(*encode_publish(message, gateway_id), qos=1, retain=retain)

    def of(self, kind: type) -> list:
        return [m for m in self.received if isinstance(m, kind)]

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Cloud:
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        await self.start_broker()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_broker()
        self._http.shutdown()
        self._http.server_close()
