"""Bytes a gateway downloads for a patch release: `.venv/bin/python bench/update_bytes.py`.

Two release archives of the agent are built from this working tree (the gateway's files
of `src/kenshin`, an uncompressed tar with fixed mtimes and owners), the second from a
temporary copy with ONE module changed by a small edit. Both are published in a TUF
repository (`kenshin.updates.repository`) with a bsdiff delta from the first to the
second, and served by the real server app under uvicorn, over HTTPS (TLS 1.3, the ECDSA
chain of `bench/_platform.py`) and, to split what TLS costs, over plain HTTP.

A gateway that checked in at the first release (its trusted metadata in its state
directory) then takes the second with `kenshin.updates.client`: as a delta (it holds the
first archive) and as the full target. Everything it downloads counts: the metadata (a
probe for a newer root, the timestamp, the snapshot, the targets) and the target.

Bytes are counted as the uplink bench counts them (`bench/uplink_bytes.py`'s
`LoopbackCapture`, or its `TapRelay` where a capture is not possible or with --relay):
both directions, IPv4 and TCP headers, handshakes, ACKs, TLS records and handshakes.

    --quick   the same run (it takes seconds); accepted for the benches' smoke test
    --relay   the relay method even where a capture is possible
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tuf.ngclient import Urllib3Fetcher

from bench._platform import (
    ETHERNET_MSS,
    TlsFiles,
    listening_socket,
    make_tls_files,
    quiet_logging,
    scratch_dir,
)
from bench.uplink_bytes import LoopbackCapture, Segment, TapRelay, sums
from bench.wire_size import print_table
from kenshin.updates.archive import agent_files, build_archive
from kenshin.updates.client import UpdateClient
from kenshin.updates.deltas import publish_deltas
from kenshin.updates.keys import KeyDirs
from kenshin.updates.repository import Repository

GOAL_BYTES = 50_000  # a patch release on the wire, both directions
SOURCE = Path(__file__).resolve().parents[1] / "src" / "kenshin"
PATCHED = "gateway/poller.py"  # the one module the patch release changes
PATCH = '''

def _patch_note() -> str:
    """1.0.1: a meter that answers busy is asked once more before the slot is given up."""
    return "busy meters are retried once"
'''
V1, V2 = "1.0.0", "1.0.1"


def build_releases(work: Path) -> tuple[bytes, bytes]:
    """The agent's archive from the working tree, and again with one module edited."""
    copy = work / "src" / "kenshin"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    first = build_archive(agent_files(copy))
    module = copy / PATCHED
    module.write_text(module.read_text("utf-8") + PATCH, "utf-8")
    return first, build_archive(agent_files(copy))


class CountingFetcher(Urllib3Fetcher):
    """ngclient's own fetcher, counting the response bodies by kind."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []
        self.bodies = {"metadata": 0, "target": 0}

    def _fetch(self, url: str) -> Iterator[bytes]:
        self.requests.append(url.rsplit("/", 1)[-1])
        chunks = super()._fetch(url)  # raises for a 404 now, as ngclient expects
        kind = "metadata" if "/metadata/" in url else "target"

        def counted() -> Iterator[bytes]:
            for chunk in chunks:
                self.bodies[kind] += len(chunk)
                yield chunk

        return counted()

    def close(self) -> None:
        """Close the kept-alive connection now, so the run's FINs are counted in it (a
        gateway's would close at the server's keep-alive timeout: the same packets)."""
        for pool in self._proxy_env._pool_managers.values():  # ngclient keeps no public handle
            pool.clear()


@dataclass
class Run:
    scheme: str
    via: str
    fetcher: CountingFetcher
    segments: list[Segment] = field(default_factory=list)

    @property
    def wire(self) -> int:
        return sum(sums(self.segments))

    @property
    def payload(self) -> int:
        return sum(s.payload for s in self.segments)


class Server:
    """The server app serving `repo` under uvicorn on 127.0.0.1 (TLS if `tls`)."""

    def __init__(self, work: Path, repo: Path, tls: TlsFiles | None):
        import uvicorn

        from kenshin.server.app import create_app
        from kenshin.server.settings import Settings

        settings = Settings(
            database_url=f"sqlite:///{work / ('kenshin-tls.db' if tls else 'kenshin.db')}",
            secret_key=base64.b64encode(secrets.token_bytes(32)).decode(),
            devices=False,
            jobs=False,
            auto_migrate=False,  # the update repository needs no database
            access_log=False,
            updates_dir=repo,
        )
        self.sock = listening_socket(ETHERNET_MSS)
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                log_level="warning",
                ssl_certfile=str(tls.chain) if tls else None,
                ssl_keyfile=str(tls.key) if tls else None,
            )
        )
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Server:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def measure(work: Path, *, force_relay: bool) -> tuple[list[Run], dict]:
    tls = make_tls_files(work)
    os.environ["SSL_CERT_FILE"] = str(tls.ca)  # the gateway trusts our root like a public CA
    first, second = build_releases(work)
    (work / "v1.tar").write_bytes(first)
    (work / "v2.tar").write_bytes(second)
    keys = KeyDirs(work / "offline", work / "online", work / "recipe-keys")
    repo = Repository.init(work / "repo", keys)
    repo.add_release(work / "v1.tar", V1)
    why_not = None if force_relay else LoopbackCapture.unavailable()
    method = "relay" if force_relay or why_not else "capture"
    facts = {"method": method, "why_not": why_not, "chain": tls.chain_der_bytes}
    runs: list[Run] = []
    async with Server(work, repo.path, None) as plain, Server(work, repo.path, tls) as secure:
        ports = {"http": plain.port, "https": secure.port}
        taps = {}
        if method == "relay":
            for scheme, port in ports.items():
                taps[scheme] = TapRelay(("127.0.0.1", port))
                await taps[scheme].start()
        url = {
            s: f"{s}://127.0.0.1:{(taps[s].port if taps else p)}/updates" for s, p in ports.items()
        }
        root = repo.metadata_dir / "1.root.json"
        # The gateway checked in while the first release was the newest...
        await asyncio.to_thread(UpdateClient(url["https"], work / "gw", root).refresh)
        # ...then the patch release is published, with its delta.
        repo.add_release(work / "v2.tar", V2)
        publish_deltas(repo, V2)
        facts["archive"] = repo.targets()[f"releases/{V2}.tar"].length
        facts["delta"] = repo.targets()[f"deltas/{V1}-{V2}.bsdiff"].length
        capture = LoopbackCapture(set(ports.values()), ETHERNET_MSS) if not taps else None
        if capture is not None:
            capture.start()
        try:
            for scheme in ("http", "https"):
                for via in ("delta", "full"):
                    state = work / f"gw-{scheme}-{via}"
                    shutil.copytree(work / "gw", state)
                    run = Run(scheme, via, CountingFetcher())
                    client = UpdateClient(url[scheme], state, root, fetcher=run.fetcher)
                    have = work / "v1.tar" if via == "delta" else None
                    if scheme in taps:
                        taps[scheme].segments.clear()
                    t0 = time.monotonic()
                    fetched = await asyncio.to_thread(client.fetch_release, V2, have)
                    run.fetcher.close()
                    assert fetched.via == via and fetched.path.read_bytes() == second
                    run.segments = await _segments(capture, taps.get(scheme), ports[scheme], t0)
                    runs.append(run)
        finally:
            if capture is not None:
                capture.stop()
            for tap in taps.values():
                await tap.close()
    return runs, facts


async def _segments(capture, tap, port: int, t0: float) -> list[Segment]:
    """The run's segments, once the last FIN has been counted (connections close when the
    client's pool is dropped; a capture sees packets a moment after they pass)."""
    deadline = time.monotonic() + 5
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        found = tap.segments if tap else [s for s in capture.segments if s.server_port == port]
        found = [s for s in found if s.t >= t0]
        if len(found) != last:
            last, stable_since = len(found), time.monotonic()
        elif time.monotonic() - stable_since > 0.3:
            return found
        await asyncio.sleep(0.05)
    return found


def kb(n: float) -> str:
    return f"{n / 1000:,.1f} kB"


def report(runs: list[Run], facts: dict) -> int:
    by = {(r.scheme, r.via): r for r in runs}
    print(f"archive: the gateway's files of src/kenshin, uncompressed tar: {facts['archive']:,} B")
    print(f"patch:   {PATCHED} edited ({len(PATCH)} B added); delta {facts['delta']:,} B (bsdiff4)")
    if facts["method"] == "capture":
        print(f"method:  packet capture on lo, MSS {ETHERNET_MSS}, as bench/uplink_bytes.py")
    else:
        why = f" ({facts['why_not']})" if facts["why_not"] else ""
        print(f"method:  counting TCP relay, modelled IPv4/TCP headers and ACKs{why}")
    print(f"TLS:     a 2-certificate ECDSA chain ({facts['chain']:,} B), one handshake")
    print()
    rows = [("bytes a gateway downloads for the patch release", "as a delta", "as the full target")]

    def row(label: str, value) -> None:
        rows.append((label, *(value(v) for v in ("delta", "full"))))

    row("metadata (HTTP bodies)", lambda v: f"{by['https', v].fetcher.bodies['metadata']:,}")
    row("target (HTTP body)", lambda v: f"{by['https', v].fetcher.bodies['target']:,}")
    row("requests", lambda v: str(len(by["https", v].fetcher.requests)))
    row("HTTP headers (plain HTTP payload - bodies)", lambda v: f"{_headers(by['http', v]):,}")
    row("TLS (HTTPS payload - HTTP payload)", lambda v: f"{_tls(by, v):,}")
    row("IPv4/TCP headers, handshakes, ACKs", lambda v: f"{_ip(by['https', v]):,}")
    row("on the wire, HTTPS, both directions", lambda v: f"{by['https', v].wire:,}")
    row("  in kB", lambda v: kb(by["https", v].wire))
    row(
        f"goal: under {kb(GOAL_BYTES)}",
        lambda v: "met" if by["https", v].wire < GOAL_BYTES else "NOT met",
    )
    print_table(rows)
    print()
    delta = by["https", "delta"]
    print(f"requests of the delta run: {', '.join(delta.fetcher.requests)}")
    met = delta.wire < GOAL_BYTES
    print(f"patch release under {kb(GOAL_BYTES)} on the wire: {'met' if met else 'NOT met'} "
          f"({kb(delta.wire)} as a delta; {by['https', 'full'].wire / delta.wire:,.0f}x less "
          f"than the full target)")  # fmt: skip
    return 0


def _headers(run: Run) -> int:
    return run.payload - sum(run.fetcher.bodies.values())


def _tls(by: dict, via: str) -> int:
    return by["https", via].payload - by["http", via].payload


def _ip(run: Run) -> int:
    return run.wire - run.payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the same run (smoke test)")
    parser.add_argument("--relay", action="store_true", help="count with a relay, not a capture")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    quiet_logging()
    work = scratch_dir("kenshin-update-bytes-")
    try:
        runs, facts = asyncio.run(measure(work, force_relay=args.relay))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(runs, facts)


if __name__ == "__main__":
    sys.exit(main())
