"""The embedded MQTT broker of the one-process deployment: amqtt, guarded by :mod:`.access`.

``EmbeddedBroker(checker)`` runs an amqtt ``Broker`` on 127.0.0.1 (a free port by default)
with exactly two plugins and nothing else (no anonymous plugin, no ``$SYS`` plugin):

* ``CheckerAuthPlugin`` calls ``checker.authenticate(username, password)`` for each CONNECT;
  no username (anonymous), an unknown user, a wrong password or a checker that raises gives
  CONNACK return code 5 (not authorised) and the connection is closed.
* ``AccessPlugin`` answers amqtt's topic checks with :func:`.access.may_publish`
  (``PUBLISH``), :func:`.access.may_subscribe` (``SUBSCRIBE``) and :func:`.access.may_receive`
  (``RECEIVE``, checked again for every delivery).

How they are wired: amqtt 0.12 loads plugins from the ``plugins`` section of the broker config,
a dict of dotted class path -> options; each options dict is turned into the plugin's inner
``Config`` dataclass (dacite, strict). Options need not be strings, so the config carries the
live :class:`_Gate` object (checker + the principal of each session) to both plugins: no
entry points, no packaging metadata, no global state, several brokers per process.

What amqtt 0.12 does with a refusal (checked by ``tests/server/test_broker.py``):

* refused SUBSCRIBE: SUBACK return code 0x80 for that filter, no subscription is stored, so
  nothing is delivered (and every delivery is checked again as ``RECEIVE``);
* refused PUBLISH: MQTT 3.1.1 has no negative PUBACK. amqtt sends the PUBACK on receipt
  (before the access check), then drops the message: it is neither delivered nor retained.
  Mosquitto does the same for 3.1.1 clients. A device therefore cannot notice a refusal;
  the broker logs it ("not allowed to publish");
* a refused or malformed PUBLISH never ends the session's delivery (these and the next
  point: ``tests/server/test_embedded_refusals.py``). amqtt 0.12 stopped handing on a
  session's messages after a ``$`` topic (or an empty topic name) but kept the connection
  and went on acknowledging them: every later reading was PUBACKed and lost. Here a ``$``
  topic is refused like any other (dropped, logged); an empty topic name, a protocol
  error, closes the connection as MQTT requires, and so does a failure to hand a message
  on. (A wildcard in a topic name never gets this far: amqtt's parser discards the
  packet mid-way and reads on from there; no MQTT client library sends one.)
* a QoS 1/2 PUBLISH is acknowledged only after the broker has handed it on to its
  subscribers (amqtt acknowledged on receipt): a message lost with its connection was
  never acknowledged, so the gateway sends it again (its rows leave its queue only
  after the PUBACK);
* a Will message is published by amqtt without any topic check, so the auth plugin drops
  (clears) a Will whose topic the principal may not publish to, and the Will of any refused
  CONNECT (amqtt copies the Will of a refused CONNECT onto an existing persistent session and
  would send it when it closes the old connection). The CONNECT itself stands, as with
  Mosquitto, which accepts such a Will and never sends it.

Shared subscriptions: amqtt 0.12 does **not** support ``$share/<group>/...``: it would store
the filter literally and never match it. So the embedded broker *refuses* ``$share``
filters (SUBACK 0x80) instead of silently never delivering; the ingest subscribes plainly
(``k/+/d``) when it runs against the embedded broker, which has one ingest anyway.

Two amqtt weaknesses this module works around or leaves, so that the embedded broker is fit
for the demo and single-host installs, and Mosquitto (:mod:`.mosquitto`) is the broker for
anything reachable from the internet:

* amqtt sends, on every CONNECT, the retained messages of *every* filter anyone has
  subscribed to, unchecked, to the new client (a device would get other devices' retained
  settings). ``_GuardedBroker`` overrides that step and only sends a client the retained
  messages of filters it may subscribe to itself.
* amqtt looks up and takes over a session by client id *before* authenticating, so a client
  that knows another's client id can drop that client's connection (and, with a clean
  session, its subscriptions) even with a wrong password. It cannot speak for it or read
  its messages: the principal of a session is the one of its last successful CONNECT, and a
  persistent session is never handed to another username (refused at CONNECT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from .access import CredentialChecker, Principal, may_publish, may_receive, may_subscribe

__all__ = ["AccessPlugin", "CheckerAuthPlugin", "EmbeddedBroker"]

_log = logging.getLogger(__name__)


class _LateAckFilter(logging.Filter):
    """amqtt waits 5 s (fixed) for a subscriber's PUBACK. The ingest acknowledges after its
    commit, which a large backfill on a busy machine can take longer than: amqtt then logs
    a warning and the same as an error with a traceback, and stops waiting (the ingest has
    the message and stores it). Keep the warning, said plainly; drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, TimeoutError) and "PUBACK" in str(error):
            return False
        if isinstance(record.msg, str) and record.msg.startswith("Timeout waiting for PUBACK"):
            record.msg += " (a slow commit in the ingest; it has the message)"
        return True


_LATE_ACK_FILTER = _LateAckFilter()


class _Gate:
    """What both plugins of one broker share: the checker and each session's principal."""

    def __init__(self, checker: CredentialChecker) -> None:
        self.checker = checker
        # Keyed by the identity of amqtt's Session object (which compares by value): a clean
        # session is a new object per connection, a persistent one keeps its principal across
        # reconnects and refused CONNECTs. An entry goes when its session is collected.
        self._principals: dict[int, Principal] = {}

    def principal_of(self, session: Session) -> Principal | None:
        return self._principals.get(id(session))

    def _bind(self, session: Session, principal: Principal) -> None:
        key = id(session)
        if key not in self._principals:
            weakref.finalize(session, self._principals.pop, key, None)
        self._principals[key] = principal

    async def authenticate(self, session: Session) -> bool:
        username, password = session.username, session.password
        principal: Principal | None = None
        if username is not None and password is not None:
            try:
                principal = await self.checker.authenticate(username, password)
            except Exception:
                _log.exception("credential check failed for %r; refusing", username)
        if principal is not None:
            previous = self.principal_of(session)
            if previous is not None and previous != principal:
                _log.warning(
                    "%r may not take over the session %r of %r",
                    principal.username,
                    session.client_id,
                    previous.username,
                )
                principal = None
        if principal is not None and session.will_flag:
            will_topic = session.will_topic or ""
            if not may_publish(principal, will_topic):
                # As Mosquitto does: the CONNECT stands, the Will is never sent.
                _log.warning("%r may not set a Will on %r", principal.username, will_topic)
                _clear_will(session)
        if principal is None:
            _log.info("CONNECT refused for %r (client id %r)", username, session.client_id)
            _clear_will(session)
            return False
        self._bind(session, principal)
        return True

    def allowed(self, session: Session | None, topic: str | None, action: Action | None) -> bool:
        if session is None or topic is None:
            return False
        principal = self.principal_of(session)
        if principal is None:
            return False
        if action == Action.PUBLISH:
            return may_publish(principal, topic)
        if action == Action.SUBSCRIBE:
            if topic.startswith("$share/"):
                _log.warning("shared subscriptions are not supported by amqtt: %r", topic)
                return False
            return may_subscribe(principal, topic)
        if action == Action.RECEIVE:
            return may_receive(principal, topic)
        return False


def _clear_will(session: Session) -> None:
    session.will_flag = False
    session.will_topic = None
    session.will_message = None
    session.will_retain = False


@dataclass
class _GateConfig:
    gate: Any = None


class CheckerAuthPlugin(BaseAuthPlugin):
    """amqtt authentication plugin: delegates to the :class:`.access.CredentialChecker`."""

    Config = _GateConfig

    async def authenticate(self, *, session: Session) -> bool | None:
        gate: _Gate = self.config.gate
        return await gate.authenticate(session)


class AccessPlugin(BaseTopicPlugin):
    """amqtt topic plugin: publish, subscribe and receive checks of :mod:`.access`."""

    Config = _GateConfig

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        gate: _Gate = self.config.gate
        return gate.allowed(session, topic, action)


class _SnapshotDict(dict):
    """amqtt 0.12 iterates its subscription table across awaits (and deletes from it while
    iterating), so a client subscribing meanwhile raised "dictionary changed size during
    iteration" and dropped a connection: iterate over a snapshot instead."""

    def __iter__(self):
        return iter(list(super().keys()))

    def items(self):
        return list(super().items())


# Whether the CONNECT of the connection served by the current task was refused.
_refused: ContextVar[bool] = ContextVar("kenshin_connect_refused", default=False)


class _HandOff(asyncio.Queue):
    """A session's queue of received publishes whose ``put`` (after which amqtt sends the
    PUBACK or PUBCOMP) returns only once the broker has handed the message on. A ``put``
    cancelled first (the connection ended) takes its message back: it was never
    acknowledged, and the client sends it again."""

    def __init__(self) -> None:
        super().__init__()
        # By identity: amqtt's messages have no identity of their own (packet ids repeat).
        self._waiting: dict[int, asyncio.Future[None]] = {}

    async def put(self, item: Any) -> None:
        handed_on = asyncio.get_running_loop().create_future()
        self._waiting[id(item)] = handed_on
        self.put_nowait(item)
        try:
            await handed_on
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):  # already taken: delivered, maybe twice
                self._queue.remove(item)
            raise
        finally:
            self._waiting.pop(id(item), None)

    def handed_on(self, item: Any) -> None:
        waiter = self._waiting.get(id(item))
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _GuardedBroker(Broker):
    """amqtt's Broker, minus the unchecked send of other clients' retained messages, with
    a subscription table that is safe to iterate across awaits, and a session that
    survives a refused publish and acknowledges only what it handed on (module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subscriptions = _SnapshotDict(self._subscriptions)

    async def _handle_client_session(
        self, reader: Any, writer: Any, client_session: Session, *args: Any
    ) -> None:
        queue = client_session.delivered_message_queue
        if not isinstance(queue, _HandOff):
            client_session.delivered_message_queue = _HandOff()
            while not queue.empty():  # a persistent session's, from before: keep the order
                client_session.delivered_message_queue.put_nowait(queue.get_nowait())
        _refused.set(False)
        await super()._handle_client_session(reader, writer, client_session, *args)
        if _refused.get() and client_session.transitions.is_connected():
            # amqtt leaves a refused CONNECT's session "connected": the owner's next CONNECT
            # then waits on a take-over of a connection that never started, and times out.
            client_session.transitions.disconnect()

    async def _authenticate(self, session: Session, listener: Any) -> bool:
        admitted = await super()._authenticate(session, listener)
        _refused.set(not admitted)  # this connection's task only
        return admitted

    async def _handle_message_delivery(
        self, client_session: Session, handler: Any, wait_deliver: asyncio.Future[Any]
    ) -> bool:
        message = wait_deliver.result()
        topic = getattr(message, "topic", None)
        if topic and topic.startswith("$"):
            # Refused as an ACL refusal is: amqtt's own check ended the session's delivery
            # for good while the connection stayed up.
            _log.info("%s may not publish to %r", client_session.client_id, topic)
            handed_on = True
        else:
            try:
                handed_on = await super()._handle_message_delivery(
                    client_session, handler, wait_deliver
                )
            except Exception:  # raised out of the message loop, it left the connection deaf
                _log.exception("could not hand on a message of %s", client_session.client_id)
                handed_on = False
        if not handed_on:
            # A protocol error (amqtt says it closes the connection, and does not) or a failure
            # of ours: close it, so the client connects again and sends what was not acked.
            await handler.handle_connection_closed()
        elif message is not None:
            client_session.delivered_message_queue.handed_on(message)
        return True  # False would end the message loop and leave the connection up

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        # Called after a granted SUBSCRIBE (passes) and, on every CONNECT, once for each
        # filter held by *any* client (only the client's own kind of filters pass). Under
        # the access rules, a filter a principal may subscribe to only matches topics it
        # may receive.
        if await self._topic_filtering(session, subscription[0], Action.SUBSCRIBE):
            await super()._publish_retained_messages_for_subscription(subscription, session)


def _bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class EmbeddedBroker:
    """An amqtt broker on ``host:port`` (port 0: a free one), admitting only what
    :mod:`.access` allows.

    ``async with EmbeddedBroker(checker) as broker: ... broker.port, broker.url``
    """

    def __init__(self, checker: CredentialChecker, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._gate = _Gate(checker)
        self._broker: Broker | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the broker is not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        plugin_options = {"gate": self._gate}
        return {
            "listeners": {
                "default": {
                    "type": "tcp",
                    "bind": _bind_address(self.host, self._requested_port),
                },
            },
            "plugins": {
                f"{__name__}.CheckerAuthPlugin": plugin_options,
                f"{__name__}.AccessPlugin": plugin_options,
            },
        }

    async def start(self) -> None:
        if self._broker is not None:
            raise RuntimeError("the broker is already started")
        # amqtt's DEBUG output quotes message payloads, and settings carry B-route
        # credentials: its loggers never go below INFO.
        for name in ("amqtt", "transitions"):
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() < logging.INFO:
                logger.setLevel(logging.INFO)
        for name in ("amqtt.broker", "amqtt.mqtt.protocol.handler"):
            if _LATE_ACK_FILTER not in logging.getLogger(name).filters:
                logging.getLogger(name).addFilter(_LATE_ACK_FILTER)
        broker = _GuardedBroker(self._config(), loop=asyncio.get_running_loop())
        await broker.start()
        self._broker = broker
        server = broker._servers["default"].instance  # amqtt keeps no public handle
        self._port = server.sockets[0].getsockname()[1]
        _log.info("embedded MQTT broker listening on %s", self.url)

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()
        self._port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
