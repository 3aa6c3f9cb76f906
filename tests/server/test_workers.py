"""Several processes (kenshin.server.workers): what an API worker asks of the device
service reaches the background process that runs it; a broker credential is granted or
revoked before the worker answers, and only a signed request is obeyed."""

from __future__ import annotations

import asyncio
import pickle
import socket

import pytest

from kenshin.server.workers import RelayedDeviceService, _Relay


class _Service:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def wake(self) -> None:
        self.calls.append(("wake",))

    def credential_issued(self, username: str, password: str) -> None:  # called in a thread
        if username == "GW-REFUSED":
            raise RuntimeError("the broker refused createClient")
        self.calls.append(("grant", username, password))

    def credential_revoked(self, username: str) -> None:
        self.calls.append(("revoke", username))


def test_a_workers_wake_and_credentials_reach_the_background() -> None:
    async def main() -> list[tuple]:
        service = _Service()
        key = b"k" * 32
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Relay(service, key), local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        # As the parent hands it to each spawned worker: pickled (no socket yet).
        relayed = pickle.loads(pickle.dumps(RelayedDeviceService(None, "mosquitto", port, key)))
        relayed.wake()
        async with asyncio.timeout(5):
            while not service.calls:
                await asyncio.sleep(0.01)
        await asyncio.to_thread(relayed.credential_issued, "GW-1", "pw 1")
        await asyncio.to_thread(relayed.credential_revoked, "GW-1")
        with pytest.raises(RuntimeError, match="the broker refused createClient"):
            await asyncio.to_thread(relayed.credential_issued, "GW-REFUSED", "pw")
        # Anyone else on this host: the same request unsigned, or signed with another key.
        forger = RelayedDeviceService(None, "mosquitto", port, b"x" * 32)
        with pytest.raises((TimeoutError, socket.timeout)):
            await asyncio.to_thread(forger.credential_issued, "GW-EVIL", "mine", 0.5)
        pickle.dumps(relayed)  # still picklable once its socket exists
        transport.close()
        return service.calls

    assert asyncio.run(main()) == [("wake",), ("grant", "GW-1", "pw 1"), ("revoke", "GW-1")]
