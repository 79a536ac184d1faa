"""The app factory: a FastAPI app with the operational routes and middleware every
service needs, so an app only adds its own routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from servicekit.bodylimit import BodyLimitMiddleware
from servicekit.config import ServiceConfig
from servicekit.errors import UnhandledErrorMiddleware, install_error_handlers
from servicekit.faults import FaultInjectionMiddleware, FaultSource
from servicekit.lifecycle import ReadinessCheck, ServiceState
from servicekit.metrics import ServiceMetrics
from servicekit.requestid import RequestIdMiddleware
from servicekit.telemetry import TelemetryMiddleware

__all__ = ["Lifespan", "build_service", "service_metrics", "service_state"]

logger = logging.getLogger("servicekit.app")

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def build_service(
    name: str,
    config: ServiceConfig,
    *,
    readiness_checks: Sequence[ReadinessCheck] = (),
    lifespans: Sequence[Lifespan] = (),
    fault_random: Callable[[], float] = random.random,
    fault_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> FastAPI:
    """A FastAPI app named `name` (a DNS label; also the metric prefix) serving:

    - GET /healthz: liveness, always 200 {"status": "ok"} while the process serves;
    - GET /readyz: 200 when ready, else 503 whose "failed" maps each failing condition
      (startup, draining, fault-injection, or a readiness check's name) to the reason;
    - GET /metrics: Prometheus text (see ServiceMetrics);
    - GET /version: {"app": name, "version": config.app_version}.

    `lifespans` are entered in order at startup and exited in reverse at shutdown; the app
    turns ready only after all have started, and unready before any is exited.

    Middleware, outermost first: request id (so everything below can log it), telemetry
    (metrics and access log see every answer, 413s and injected faults included), the
    unhandled-error guard, fault injection, the body size limit.

    `fault_random` and `fault_sleep` exist for tests that pin injected faults.
    """
    if not _NAME.match(name):
        raise ValueError(f"service name {name!r} must be a lowercase DNS label, e.g. 'gateway'")
    metrics = ServiceMetrics(name, config.app_version)
    faults = FaultSource(config.faults, config.fault_config_file)
    state = ServiceState(name, config.app_version, faults, metrics, tuple(readiness_checks))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for enter in lifespans:
                await stack.enter_async_context(enter(app))
            state.started = True
            logger.info("%s %s started", name, config.app_version)
            try:
                yield
            finally:
                state.started = False

    app = FastAPI(title=name, version=config.app_version, lifespan=lifespan)
    app.state.service = state
    app.state.config = config
    install_error_handlers(app)
    # add_middleware puts each one outside the previous: this is innermost-first.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(FaultInjectionMiddleware, source=faults, metrics=metrics,
                       rand=fault_random, sleep=fault_sleep)
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(TelemetryMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    _add_operational_routes(app, state)
    return app


def _add_operational_routes(app: FastAPI, state: ServiceState) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        readiness = await state.readiness()
        return JSONResponse(readiness.to_json(), status_code=200 if readiness.ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/version", include_in_schema=False)
    async def version() -> dict[str, str]:
        return {"app": state.name, "version": state.version}


def service_state(app: FastAPI) -> ServiceState:
    """The ServiceState of an app made by build_service (readiness, drain hooks)."""
    state = getattr(app.state, "service", None)
    if not isinstance(state, ServiceState):
        raise TypeError("this app was not made by servicekit.build_service")
    return state


def service_metrics(app: FastAPI) -> ServiceMetrics:
    """The ServiceMetrics of an app made by build_service, to register app metrics on."""
    return service_state(app).metrics
