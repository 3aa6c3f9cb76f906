"""The gateway's side of enrollment (see `kenshin.wire.enrollment` for the exchange).

Plain HTTPS with the standard library (one POST pair per start does not justify an HTTP
client dependency on a small box), run in a thread so the event loop keeps going.

Each enrollment makes a fresh X25519 seal key, kept in memory only (in the returned
`Enrollment`) and sent signed with the identity key: the server seals the B-route
credentials of the retained settings to it, so only this running process can read them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from kenshin.wire.enrollment import b64encode
from kenshin.wire.sealing import SealKey

from .backoff import Backoff, doubling, full_jitter
from .identity import Identity

log = logging.getLogger(__name__)


class EnrollmentError(Exception):
    """The server refused us (status and its problem detail in the message)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


# A delay named by the server is obeyed up to this: a server gone wrong must not park
# its fleet for days.
MAX_CONNECT_DELAY_S = 6 * 3600.0


@dataclass(frozen=True)
class MqttAccess:
    host: str
    port: int
    tls: bool
    username: str
    password: str
    keepalive_s: int = 1900  # past the 30-minute batches: data messages replace pings
    alternates: tuple[tuple[str, int], ...] = ()  # a cluster's other nodes, tried in turn
    # Admission control: seconds to wait before the first connection, so a fleet enrolling
    # together reaches the broker at the rate it can take (the server's pacer).
    connect_after_s: float = 0.0
    # The broker keeps no session for us (a cluster): whatever the server sent while we
    # were away comes again once it hears from us.
    clean_session: bool = False

    def node(self, index: int) -> tuple[str, int]:
        """The broker node to try at the `index`-th attempt (round robin)."""
        nodes = [(self.host, self.port), *self.alternates]
        return nodes[index % len(nodes)]

    def __repr__(self) -> str:
        return f"MqttAccess({self.host}:{self.port}, tls={self.tls}, user={self.username})"


@dataclass(frozen=True)
class Enrollment:
    gateway_id: str
    mqtt: MqttAccess
    seal_key: SealKey  # opens what the server sealed to this enrollment (memory only)


@dataclass(frozen=True)
class Unclaimed:
    retry_after_s: float


def _post(url: str, body: dict, timeout_s: float) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    context = ssl.create_default_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        try:
            detail = json.loads(err.read() or b"{}")
        except ValueError:
            detail = {}
        return err.code, detail


async def enroll_once(identity: Identity, timeout_s: float = 20.0) -> Enrollment | Unclaimed:
    base = identity.server_url.rstrip("/") + "/api/v1/enroll"
    status, body = await asyncio.to_thread(
        _post, base + "/challenge", {"serial": identity.serial}, timeout_s
    )
    if status != 200:
        raise EnrollmentError(_problem(status, body), status)
    challenge = body["challenge"]
    seal_key = SealKey()
    request = {
        "serial": identity.serial,
        "challenge": challenge,
        "signature": identity.sign_challenge(challenge, seal_key.public_key),
        "seal_key": b64encode(seal_key.public_key),
    }
    status, body = await asyncio.to_thread(_post, base, request, timeout_s)
    if status == 202:
        return Unclaimed(float(body.get("retry_after_s", 60)))
    if status != 200:
        raise EnrollmentError(_problem(status, body), status)
    mqtt = body["mqtt"]
    host = mqtt.get("host") or urlsplit(identity.server_url).hostname or "127.0.0.1"
    return Enrollment(
        body["gateway_id"],
        MqttAccess(
            host,
            int(mqtt["port"]),
            bool(mqtt.get("tls")),
            mqtt["username"],
            mqtt["password"],
            int(mqtt.get("keepalive_s", 1900)),
            tuple((str(a["host"]), int(a["port"])) for a in mqtt.get("alternates") or ()),
            min(max(float(mqtt.get("connect_after_s") or 0.0), 0.0), MAX_CONNECT_DELAY_S),
            mqtt.get("clean_session") is True,
        ),
        seal_key,
    )


async def enroll_until_claimed(identity: Identity, timeout_s: float = 20.0) -> Enrollment:
    """Enroll, waiting while unclaimed and retrying (with jittered backoff) while the server
    is unreachable; a refusal of our identity (401/403) is retried slowly too, since an
    operator may fix it on the server, but it is logged as what it is."""
    backoff = Backoff(doubling(2.0, 300.0))
    while True:
        try:
            result = await enroll_once(identity, timeout_s)
        except EnrollmentError as err:
            refused = err.status in (401, 403)
            log.log(logging.ERROR if refused else logging.WARNING, "enrollment refused: %s", err)
            await backoff.wait(min_ceiling_s=60.0 if refused else 0.0)
        except (OSError, ValueError, KeyError) as err:
            delay = backoff.next_delay()
            log.warning("enrollment failed (%s); again in %.0f s", err, delay)
            await asyncio.sleep(delay)
        else:
            if isinstance(result, Enrollment):
                log.info("enrolled as %s", result.gateway_id)
                return result
            # Jittered too: a batch of boxes installed together would otherwise poll together.
            delay = full_jitter(result.retry_after_s)
            log.info("not claimed yet; asking again in %.0f s", delay)
            await asyncio.sleep(delay)


def _problem(status: int, body: dict) -> str:
    title = body.get("title") or "error"
    detail = body.get("detail")
    return f"HTTP {status} {title}" + (f": {detail}" if detail else "")
