"""Several processes (kenshin.server.workers): what an API worker asks of the device
service reaches the background process that runs it."""

from __future__ import annotations

import asyncio
import pickle

from kenshin.server.workers import RelayedDeviceService, _Relay


class _Service:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def wake(self) -> None:
        self.calls.append("wake")

    def credentials_changed(self) -> None:  # called in a thread (it writes files)
        self.calls.append("credentials")


def test_a_workers_wake_and_new_credentials_reach_the_background() -> None:
    async def main() -> list[str]:
        service = _Service()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Relay(service), local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        # As the parent hands it to each spawned worker: pickled (no socket yet).
        relayed = pickle.loads(pickle.dumps(RelayedDeviceService(None, "embedded", port)))
        for call, expected in ((relayed.wake, 1), (relayed.credentials_changed, 2)):
            call()
            async with asyncio.timeout(5):
                while len(service.calls) < expected:
                    await asyncio.sleep(0.01)
        pickle.dumps(relayed)  # still picklable once its socket exists
        transport.close()
        return service.calls

    assert asyncio.run(main()) == ["wake", "credentials"]
