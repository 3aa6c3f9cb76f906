"""The gateway's recipe runtime: verified recipes, run with only what they declared.

The settings' ``recipes`` section names the recipes a gateway runs, each with its options
(``{"pv-inverter": {"host": "192.168.1.20", "interval_s": 60}}``). For each, `RecipeRunner`:

1. fetches ``recipes/<name>`` through the TUF client (`UpdateClient.fetch_recipe`: signed
   by the recipes role, inside its delegation, or refused), in a thread;
2. parses the package (`kenshin.updates.recipes`), checks the agent version range, and
   checks every permission of the manifest against this gateway's `RecipePolicy` and the
   class registry *before any of its code is loaded*: a manifest asking for Set on the
   smart meter (0x0288, never), a class outside the policy or an EPC the class does not
   have with that access is refused whole;
3. loads ``recipe.py`` as a fresh module and runs ``await run(ctx)`` as a task of its own,
   outside the MQTT connection (a recipe keeps reading while the uplink is down), started
   again after a jittered backoff if it fails.

``ctx`` is a `RecipeContext`, the recipe's only door: `get`/`set` on ECHONET Lite nodes of
the home LAN (private or loopback addresses) and `publish` of the series it declared.
Anything else raises `RecipePermissionError` and is counted and reported; the recipe and
the agent go on. What runs and what was refused is reported as Events (``recipes``,
``recipe_refused``, ``recipe_failed``, ``recipe_denied``); readings as ``recipe_readings``.

The capability object bounds a recipe that goes through it. Python cannot fence a module
in the agent's process: the trust that the code *only* uses ``ctx`` comes from the recipes
key's signature (docs/updates.md, Recipes); process isolation would be a later step.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import logging
import math
import time
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kenshin.echonet.classes import Access, property_spec
from kenshin.echonet.frame import EOJ
from kenshin.echonet.udp import EchonetClient
from kenshin.updates.client import UpdateClient, UpdateError, UpdateUnavailable
from kenshin.updates.recipes import Manifest, RecipeError, read_package
from kenshin.wire import Event

from .backoff import Backoff

log = logging.getLogger(__name__)
SMART_METER = 0x0288
FETCH_AGAIN_S = 600.0  # a recipe that could not be fetched (server away) is tried again


class RecipeRefused(RecipeError):
    """The gateway's policy does not grant what the manifest asks (reason "policy")."""


class RecipePermissionError(RecipeError, PermissionError):
    """A recipe asked its context for what its manifest does not declare (reason
    "permission"); the call is refused, the recipe goes on."""


@dataclass(frozen=True)
class RecipePolicy:
    """What recipes may ever ask for on this gateway: class code → the access allowed."""

    classes: Mapping[int, Access] = field(
        default_factory=lambda: {
            0x0279: Access.GET,  # home solar power generation: read it
            0x027D: Access.GET | Access.SET,  # storage battery: read it, set its mode
        }
    )

    def check(self, manifest: Manifest) -> None:
        """`RecipeRefused` naming the first permission not granted; nothing is loaded."""
        meter = manifest.permission(SMART_METER)
        if meter is not None and meter.set:  # whatever a policy says
            self._refuse(manifest, f"Set on the smart meter (0x{SMART_METER:04X})", "never")
        for permission in manifest.echonet:
            code = permission.class_code
            allowed = self.classes.get(code, Access(0))
            for epcs, need, verb in ((permission.get, Access.GET, "Get"),
                                     (permission.set, Access.SET, "Set")):  # fmt: skip
                if not epcs:
                    continue
                if need not in allowed:
                    self._refuse(manifest, f"{verb} on class 0x{code:04X}", "not in the policy")
                for epc in sorted(epcs):
                    spec = property_spec(code, epc)
                    if spec is None or need not in spec.access:
                        self._refuse(
                            manifest,
                            f"{verb} of EPC 0x{epc:02X} on class 0x{code:04X}",
                            "the class has no such property with that access",
                        )

    @staticmethod
    def _refuse(manifest: Manifest, what: str, why: str) -> None:
        raise RecipeRefused(
            "policy",
            f"recipe {manifest.name} {manifest.version} asks for {what}: {why}",
            "ask the author for a recipe within the gateway's policy; it was not loaded",
        )


def _denied(manifest: Manifest, what: str) -> RecipePermissionError:
    return RecipePermissionError(
        "permission",
        f"recipe {manifest.name} {manifest.version} may not {what}: its manifest does not say so",
        "declare it in the manifest and sign the recipe again",
    )


def _home_host(manifest: Manifest, host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise _denied(manifest, f"reach {host!r} (not an IP address)") from None
    if not (address.is_private or address.is_loopback or address.is_link_local):
        raise _denied(manifest, f"reach {host} (outside the home LAN)")
    return host


class RecipeContext:
    """A recipe's only door to the world: exactly the manifest's permissions."""

    def __init__(
        self,
        manifest: Manifest,
        echonet: Callable[[], Any],
        publish: Callable[[str, dict[str, float]], None],
        denied: Callable[[RecipePermissionError], None],
        options: Mapping[str, Any],
    ):
        self.manifest = manifest
        self.options = dict(options)
        self.log = logging.getLogger(f"kenshin.recipe.{manifest.name}")
        self._echonet, self._publish, self._denied = echonet, publish, denied

    def _refuse(self, what: str) -> RecipePermissionError:
        error = _denied(self.manifest, what)
        self._denied(error)
        return error

    def _check(self, host: str, eoj: EOJ, epcs: Iterable[int], need: Access) -> list[int]:
        try:
            _home_host(self.manifest, host)
        except RecipePermissionError as err:
            self._denied(err)
            raise
        permission = self.manifest.permission(eoj.class_code)
        allowed = frozenset() if permission is None else (
            permission.get if need is Access.GET else permission.set
        )  # fmt: skip
        epcs = list(epcs)
        for epc in epcs:
            if epc not in allowed:
                verb = "Get" if need is Access.GET else "Set"
                raise self._refuse(f"{verb} EPC 0x{epc:02X} of class 0x{eoj.class_code:04X}")
        return epcs

    async def get(
        self, host: str, eoj: EOJ | int | str, epcs: Iterable[int], *, port: int | None = None
    ) -> dict[int, Any]:
        """Typed values of `epcs` of the object `eoj` at `host`; the node's refusals are
        left out (an `EchonetTimeout` if it does not answer)."""
        eoj = EOJ.parse(eoj) if not isinstance(eoj, EOJ) else eoj
        epcs = self._check(host, eoj, epcs, Access.GET)
        answer = await (await self._echonet()).get(host, eoj, epcs, port=port)
        return {epc: v for epc, v in answer.values.items() if not isinstance(v, Exception)}

    async def set(
        self, host: str, eoj: EOJ | int | str, epc: int, value: Any, *, port: int | None = None
    ) -> bool:
        """Set one property (SetC); whether the node accepted it."""
        eoj = EOJ.parse(eoj) if not isinstance(eoj, EOJ) else eoj
        self._check(host, eoj, [epc], Access.SET)
        answer = await (await self._echonet()).set_c(host, eoj, {epc: value}, port=port)
        return answer.ok

    def publish(self, series: str, values: Mapping[str, float]) -> None:
        """Send `values` (at most 16 finite numbers by name) as `series` to the server."""
        if series not in self.manifest.publish:
            raise self._refuse(f"publish series {series!r}")
        clean: dict[str, float] = {}
        for key, value in values.items():
            if not (isinstance(key, str) and 0 < len(key) <= 32) or len(clean) >= 16:
                raise ValueError("at most 16 values, each named by 1 to 32 characters")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key}: a number, got {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"{key}: a finite number, got {value}")
            clean[key] = value
        self._publish(series, clean)


def load_entry(manifest: Manifest, code: str) -> Callable[[RecipeContext], Any]:
    """The recipe's ``run`` from a fresh module (not in sys.modules)."""
    module = types.ModuleType(f"kenshin_recipe_{manifest.name.replace('-', '_')}")
    try:
        exec(compile(code, f"<recipe {manifest.name} {manifest.version}>", "exec"), module.__dict__)
    except Exception as err:
        raise RecipeError(
            "load", f"recipe {manifest.name} does not load: {type(err).__name__}: {err}",
            "fix the code and sign the recipe again",
        ) from None  # fmt: skip
    run = getattr(module, "run", None)
    if not inspect.iscoroutinefunction(run):
        raise RecipeError(
            "load", f"recipe {manifest.name} has no `async def run(ctx)`",
            "give it that entry point and sign it again",
        )  # fmt: skip
    return run


@dataclass
class _Running:
    manifest: Manifest
    options: dict[str, Any]
    task: asyncio.Task[None]


class RecipeRunner:
    """Keeps the recipes the settings name running. `fetch(name)`: the verified package's
    path (None: no update channel, every recipe refused)."""

    def __init__(
        self,
        fetch: Callable[[str], Path] | None,
        report: Callable[[Event], None],
        agent_version: str,
        *,
        policy: RecipePolicy | None = None,
        echonet: Callable[[], EchonetClient] | None = None,
        restart_backoff_s: tuple[float, ...] = (1, 2, 5, 10, 30, 60),
    ):
        self.fetch, self.report, self.agent_version = fetch, report, agent_version
        self.policy = policy or RecipePolicy()
        self._make_client = echonet or (
            lambda: EchonetClient(host="0.0.0.0", port=0, join_multicast=False)
        )
        self._client: EchonetClient | None = None
        self._client_lock = asyncio.Lock()
        self.restart_backoff_s = restart_backoff_s
        self.running: dict[str, _Running] = {}
        self.refused: dict[str, str] = {}  # name → reason: what
        self.denials: dict[str, int] = {}  # name → refused context calls
        self._wanted: dict[str, dict[str, Any]] = {}
        self._unavailable: set[str] = set()  # refused for want of a download: try again
        self._changed = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None

    @classmethod
    def for_agent(cls, setup: Any, agent_version: str, report: Callable[[Event], None]):
        """The agent's runner: recipes fetched through its update channel (`UpdateSetup`),
        with TUF state of their own beside the updater's, so the two never write at once."""
        if setup is None:
            return cls(None, report, agent_version)
        client = UpdateClient(setup.base_url, setup.state_dir / "recipes", setup.initial_root)
        return cls(client.fetch_recipe, report, agent_version)

    # -- what the settings want --------------------------------------------------------------

    def want(self, wanted: Mapping[str, Any]) -> None:
        """Settings arrived: run exactly these (name → options). Returns at once."""
        self._wanted = {
            str(name): dict(opts) if isinstance(opts, Mapping) else {}
            for name, opts in (wanted or {}).items()
        }
        self._changed.set()
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep())

    async def _keep(self) -> None:
        while True:
            self._changed.clear()
            await self.reconcile()
            # Only what could not be fetched is tried again: a refusal stays one until the
            # settings change or the agent restarts (no Event every ten minutes for it).
            retry = FETCH_AGAIN_S if self._unavailable else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), retry)

    async def reconcile(self) -> None:
        """Stop what is no longer wanted (or wanted with other options), start the rest."""
        before = (sorted(self.running), dict(self.refused))
        for name in list(self.running):
            if self._wanted.get(name) != self.running[name].options:
                await self._stop(name)
        self.refused = {k: v for k, v in self.refused.items() if k in self._wanted}
        self._unavailable &= set(self._wanted)
        for name, options in self._wanted.items():
            if name not in self.running:
                await self._start(name, options)
        if (sorted(self.running), self.refused) != before:
            self.report(Event("recipes", int(time.time()), self.summary()))

    def summary(self) -> dict[str, Any]:
        return {
            "running": {n: r.manifest.version for n, r in sorted(self.running.items())},
            "refused": dict(sorted(self.refused.items())),
        }

    async def _start(self, name: str, options: dict[str, Any]) -> None:
        try:
            if self.fetch is None:
                raise RecipeError(
                    "no-channel", f"recipe {name}: this agent has no update channel",
                    "run the agent under the supervisor (docs/updates.md)",
                )  # fmt: skip
            path = await asyncio.to_thread(self.fetch, name)
            recipe = read_package(Path(path).read_bytes(), name)
            recipe.manifest.check_agent(self.agent_version)
            self.policy.check(recipe.manifest)  # before a line of it is loaded
            run = load_entry(recipe.manifest, recipe.code)
        except (RecipeError, UpdateError, OSError) as err:
            reason = getattr(err, "reason", "io")
            if isinstance(err, UpdateUnavailable | OSError):
                self._unavailable.add(name)
            else:
                self._unavailable.discard(name)
            said, self.refused[name] = self.refused.get(name), f"{reason}: {err}"[:300]
            if said != self.refused[name]:  # the same refusal again is no news
                log.warning("recipe %s refused: %s", name, err)
                detail = {"recipe": name, "reason": reason, "error": str(err)[:300]}
                self.report(Event("recipe_refused", int(time.time()), detail))
            return
        self.refused.pop(name, None)
        self._unavailable.discard(name)
        manifest = recipe.manifest
        ctx = RecipeContext(
            manifest,
            self._echonet,
            lambda series, values: self._published(manifest, series, values),
            lambda error: self._on_denied(manifest, error),
            options,
        )
        task = asyncio.create_task(self._supervised(manifest, run, ctx), name=f"recipe {name}")
        self.running[name] = _Running(manifest, options, task)
        log.info("recipe %s %s running", name, manifest.version)

    async def _supervised(self, manifest: Manifest, run: Callable, ctx: RecipeContext) -> None:
        backoff = Backoff(self.restart_backoff_s)
        while True:
            try:
                await run(ctx)
                return
            except Exception as err:
                delay = backoff.next_delay()
                log.exception("recipe %s failed; again in %.1f s", manifest.name, delay)
                detail = {"recipe": manifest.name, "error": f"{type(err).__name__}: {err}"[:200]}
                self.report(Event("recipe_failed", int(time.time()), detail))
                await asyncio.sleep(delay)

    def _on_denied(self, manifest: Manifest, error: RecipePermissionError) -> None:
        self.denials[manifest.name] = self.denials.get(manifest.name, 0) + 1
        log.warning("recipe %s: %s", manifest.name, error.what)
        detail = {"recipe": manifest.name, "error": error.what[:200]}
        self.report(Event("recipe_denied", int(time.time()), detail))

    def _published(self, manifest: Manifest, series: str, values: dict[str, float]) -> None:
        detail = {"recipe": manifest.name, "series": series, "values": values}
        self.report(Event("recipe_readings", int(time.time()), detail))

    async def _echonet(self) -> EchonetClient:
        async with self._client_lock:  # one socket for every recipe, opened at first use
            if self._client is None:
                client = self._make_client()
                await client.open()
                self._client = client
            return self._client

    async def _stop(self, name: str) -> None:
        running = self.running.pop(name)
        running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running.task

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._keeper
        for name in list(self.running):
            await self._stop(name)
        if self._client is not None:
            self._client.close()
            self._client = None
