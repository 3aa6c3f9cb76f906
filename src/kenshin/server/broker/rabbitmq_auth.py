"""What RabbitMQ's HTTP auth backend asks the server, answered (docs/scaling.md).

A gateway's login costs the broker up to ten questions (its user, the vhost, its queue
three times, the exchange, its topics), and after a node is lost thousands of gateways
log in again at once: these answers are most of what the server is asked then. So they
are served by `BrokerAuthAnswers`, a plain ASGI middleware in front of the application,
before its middleware and router (request ids, the access log, rate limits, CSRF), which
cost more than the answer: measured with `bench/broker_auth.py`.

- **user**: the service account by the password in the servers' `broker` setting; a
  gateway by its enrolled credential (a fresh database read: a rotated or revoked one is
  refused at the next login), and only with its own username as client id.
- **vhost**: `/` only.
- **resource**: the service account anything; a gateway its own subscription queues
  (`mqtt-subscription-<itself>qos0|1`) and reading or writing `amq.topic`.
- **topic**: a gateway writes only `k.<itself>.{d,s,e,r}` and reads only `k.<itself>.{c,g}`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..devices.enrollment import password_hash
from .access import DOWNLINK_CHANNELS, TOPIC_ROOT, UPLINK_CHANNELS, verify_password

__all__ = ["AUTH_PREFIX", "BrokerAuthAnswers", "decide"]

log = logging.getLogger("kenshin.server.broker.rabbitmq")
AUTH_PREFIX = "/broker/auth"
MAX_FORM_BYTES = 4096
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _is(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def decide(
    question: str,
    form: dict[str, str],
    service: tuple[str, str] | None,
    stored_hash: Callable[[str], str | None],
) -> bool:
    """The answer to one question (`user`, `vhost`, `resource`, `topic`). `service`: the
    service account's (username, password); `stored_hash(username)`: a gateway's broker
    password hash, or None (no such gateway, or revoked)."""
    username = form.get("username", "")
    is_service = service is not None and _is(username, service[0])
    if question == "user":
        if is_service:
            return _is(form.get("password", ""), service[1])
        client_id = form.get("client_id")
        if client_id is not None and client_id != username:
            log.info("broker login refused: %s with the client id %r", username, client_id)
            return False  # another gateway's session is not to be had
        stored = stored_hash(username)
        return bool(stored) and verify_password(form.get("password", ""), stored)
    if question == "vhost":
        return form.get("vhost") == "/"
    if question == "resource":
        kind, name = form.get("resource"), form.get("name", "")
        if is_service:
            return True
        if kind == "exchange" and name == "amq.topic":
            return form.get("permission") in ("read", "write")
        own_queue = re.fullmatch(rf"mqtt-subscription-{re.escape(username)}qos[01]", name)
        return kind == "queue" and own_queue is not None
    if question == "topic":
        if is_service:
            return True
        channels = UPLINK_CHANNELS if form.get("permission") == "write" else DOWNLINK_CHANNELS
        own = [f"{TOPIC_ROOT}.{username}.{channel}" for channel in channels]
        return form.get("name") == "amq.topic" and form.get("routing_key", "") in own
    raise KeyError(question)


class BrokerAuthAnswers:
    """ASGI middleware: POST `AUTH_PREFIX/<question>` answered here, `allow` or `deny`;
    every other request goes on to `app`. It reads the settings and the engine from the
    application's state at each request (the application sets `scope["app"]`)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        question = path[len(AUTH_PREFIX) + 1 :] if path.startswith(AUTH_PREFIX + "/") else ""
        if question not in ("user", "vhost", "resource", "topic"):
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _respond(send, 405, b"POST only")
            return
        body = await _body(receive)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(errors="replace")).items()}
        state = scope["app"].state
        endpoint = state.settings.broker_endpoint
        service = None if endpoint is None else (endpoint.username or "", endpoint.password or "")

        def stored_hash(username: str) -> str | None:
            with state.engine.connect() as conn:
                return password_hash(conn, username)

        if question == "user" and not (service and _is(form.get("username", ""), service[0])):
            allowed = await asyncio.to_thread(decide, question, form, service, stored_hash)
        else:  # no database: answered on the event loop
            allowed = decide(question, form, service, stored_hash)
        await _respond(send, 200, b"allow" if allowed else b"deny")


async def _body(receive: Receive) -> bytes:
    """The request's body, at most MAX_FORM_BYTES of it (RabbitMQ's forms are small)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        if size < MAX_FORM_BYTES:
            chunks.append(chunk[: MAX_FORM_BYTES - size])
        size += len(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
