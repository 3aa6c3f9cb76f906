"""`create_app(settings)`: the server as an ASGI application.

Everything the application needs hangs off ``app.state`` (no module globals): `settings`,
the SQLAlchemy `engine`, the `credential_box` for B-route credentials at rest, and
`secret_key_source` / `secret_key_generated` (where the key came from; made just now?). Starting the
application migrates the database (unless ``auto_migrate`` is off); stopping it disposes
of the engine's connections.

Other parts add their routers to the returned application, e.g.
``app.include_router(devices.router, prefix=API_PREFIX)``.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import anyio.to_thread
from fastapi import FastAPI

import kenshin

from . import logs, metrics, notices, web
from .alerts import api as alerts_api
from .analytics import api as analytics_api
from .analytics.generation import CsvWeather
from .api import API_PREFIX, api_router
from .api.health import router as health_router
from .api.updates import router as updates_router
from .bodylimit import BodyLimit
from .csrf import CsrfGuard
from .db import make_engine, migrate
from .deps import DbGate, PrincipalCache
from .devices import api as devices_api
from .devices import status_api
from .devices.pacing import ConnectionPacer
from .dr import api as dr_api
from .inputs import RefuseNul
from .jobs import JobRunner, server_jobs
from .metering import api as metering_api
from .metering import demand as metering_demand
from .metering import live as metering_live
from .metering import recipe_api as metering_recipes
from .metering import settlement as metering_settlement
from .observe import RequestMiddleware
from .openadr import admin_api as openadr_admin
from .openadr import api as openadr_api
from .problems import PROBLEM_RESPONSES, install_problem_handlers
from .ratelimits import RateLimits
from .rollouts import api as rollouts_api
from .runtime import broker_link, device_service
from .schema import utcnow
from .security import CredentialBox, load_secret_key
from .settings import Settings, load_settings
from .webhooks import api as webhooks_api

__all__ = ["API_PREFIX", "create_app"]


def _wake(app: FastAPI) -> None:
    service = app.state.device_service
    if service is not None:
        service.wake()


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] | None = None
) -> FastAPI:
    """The server application for `settings` (default: from the environment). `clock`: the
    periodic jobs' time (tests run them on the simulators' compressed clock)."""
    settings = settings if settings is not None else load_settings()
    secret = load_secret_key(
        settings.secret_key.get_secret_value() if settings.secret_key else None,
        settings.secret_key_path,
    )
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_overflow,
        pool_timeout=settings.db_wait_s,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = None
        jobs = None
        sampler = metrics.Sampler(app)
        logs.adopt_uvicorn_loggers()  # uvicorn set its own up before this (logs.py)
        try:
            if settings.auto_migrate:
                await anyio.to_thread.run_sync(migrate, engine)
            if settings.runs_jobs:
                jobs = JobRunner(
                    engine,
                    server_jobs(settings, app.state.credential_box, wake=lambda: _wake(app)),
                    clock=clock or utcnow,
                )
                await jobs.start()
                app.state.jobs = jobs
            if settings.runs_devices:
                service = device_service(settings, engine, app.state.credential_box)
            elif settings.role == "api":  # the broker's door for enrollments (broker/link.py)
                service = broker_link(settings, engine)
            if service is not None:
                await service.start()
                app.state.device_service = service
            sampler.start()
            # What imports and startup built lives as long as the process: out of the
            # collector's sight, so a full collection walks only what requests make
            # (it walked ~140,000 objects, ~120 ms on 2 cores, paid by whichever request
            # set it off).
            gc.freeze()
            yield
        finally:
            gc.unfreeze()  # an app stopped in a longer process (tests) leaves no garbage pinned
            await sampler.stop()
            if jobs is not None:
                await jobs.stop()
            if service is not None:
                await service.stop()
            engine.dispose()

    app = FastAPI(
        title="Kenshin",
        version=getattr(kenshin, "__version__", "0"),
        summary="Smart-meter B-route data, from the meter to the businesses that need it.",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # web/apidocs.py: Swagger UI from a package, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.db_gate = DbGate.for_settings(settings)  # requests' turns at the pool (deps.py)
    app.state.principals = PrincipalCache()  # API keys' principals, a few seconds (deps.py)
    app.state.secret_key_source = secret.source
    app.state.secret_key_generated = secret.generated
    app.state.credential_box = CredentialBox(secret.key)
    # A separate key for enrollment challenges and claim codes, derived from the secret.
    app.state.device_key = hmac.new(secret.key, b"kenshin:devices", hashlib.sha256).digest()
    app.state.device_service = None
    app.state.jobs = None
    app.state.weather = CsvWeather(settings.weather_csv) if settings.weather_csv else None
    app.state.csrf_key = hmac.new(secret.key, b"kenshin:csrf", hashlib.sha256).digest()
    app.state.rate_limits = RateLimits(settings)
    rate = settings.paced_connections_per_s
    app.state.connection_pacer = ConnectionPacer(rate) if rate is not None else None
    install_problem_handlers(app)
    # Outermost last: the body cap first of all, then the cross-site check, then NULs.
    app.add_middleware(RefuseNul)
    app.add_middleware(CsrfGuard, key=app.state.csrf_key, public_url=settings.public_url)
    app.add_middleware(
        BodyLimit,
        default=settings.max_body_bytes,
        larger=[
            ("PUT", f"{API_PREFIX}/procurement-plan(\\.csv)?", settings.max_upload_bytes),
            ("POST", f"{API_PREFIX}/gateways/import", settings.max_upload_bytes),
            ("POST", "/log(in|out)", 16 * 1024),  # the panel's forms: an e-mail, a password
        ],
    )
    # Request ids, the access log and latency per route (observe.py): outermost of all,
    # so a refused request is logged with its id too.
    app.add_middleware(RequestMiddleware, access_log=settings.access_log)
    app.include_router(health_router)
    app.include_router(metrics.router)  # /metrics, for the bearer metrics_token (every role)
    if settings.runs_api:
        _serve_api(app)
        if settings.broker_auth == "http" and settings.broker_endpoint is not None:
            # the broker asks who may connect (docs/scaling.md): answered before the rest
            from .broker.rabbitmq_auth import BrokerAuthAnswers

            app.add_middleware(BrokerAuthAnswers)
    return app


def _serve_api(app: FastAPI) -> None:
    """The REST API and the panel (roles 'all' and 'api'; the others answer health only)."""
    app.include_router(api_router())
    app.include_router(devices_api.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(status_api.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(metering_api.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(metering_demand.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(metering_settlement.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(metering_live.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(metering_recipes.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(analytics_api.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(alerts_api.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(webhooks_api.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(notices.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(rollouts_api.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(openadr_admin.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.include_router(dr_api.router, prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    app.mount(openadr_api.BASE, openadr_api.vtn_app(app))  # the OpenADR 3 VTN (docs/dr.md)
    app.include_router(updates_router)  # the gateways' update repository, when set
    app.include_router(web.apidocs.router)  # /api/v1/docs
    app.include_router(web.router)  # the control panel's pages
    app.mount(web.STATIC_PREFIX, web.static_app(), name="static")
