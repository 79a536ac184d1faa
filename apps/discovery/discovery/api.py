"""HTTP API: a FastAPI app factory over a Registry.

Handlers are plain `def` so FastAPI runs them in its threadpool: the registry uses a
blocking lock, which must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.routing import Match
from starlette.types import Scope

from discovery import __version__
from discovery.config import MAX_BODY_BYTES, Settings
from discovery.metrics import Metrics
from discovery.middleware import BodyLimitMiddleware, MetricsMiddleware
from discovery.registry import Clock, Registry, UnknownInstanceError
from discovery.schemas import (
    NAME_PATTERN,
    AppOut,
    ChangeOut,
    DeltaOut,
    InstanceOut,
    LeaseOut,
    RegisterRequest,
    RegistryOut,
)

logger = logging.getLogger(__name__)

AppName = Annotated[str, Path(pattern=NAME_PATTERN)]
InstanceId = Annotated[str, Path(pattern=NAME_PATTERN)]


@dataclass
class Lifecycle:
    """Ready between lifespan startup and shutdown; False again while draining."""

    ready: bool = False


def create_app(registry: Registry | None = None, clock: Clock | None = None) -> FastAPI:
    """Build the app. `clock` feeds the registry built here; pass one or the other.

    Raises ValueError on invalid LEASE_SECONDS / EVICTION_INTERVAL_SECONDS so a bad
    deployment fails at startup, not at the first eviction.
    """
    settings = Settings.from_env()
    if registry is None:
        registry = Registry(clock or time.monotonic, settings.lease_seconds)
    elif clock is not None:
        raise ValueError("pass clock only when create_app builds the registry")
    reg = registry  # narrowed for the closures below
    metrics = Metrics(__version__, reg.count)
    lifecycle = Lifecycle()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_evict_forever(reg, metrics, settings.eviction_interval_seconds))
        lifecycle.ready = True
        try:
            yield
        finally:
            lifecycle.ready = False
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="discovery", version=__version__, lifespan=lifespan)
    app.state.registry = reg
    app.state.lifecycle = lifecycle
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    # Added last = outermost: metrics also see the 413s answered by the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(MetricsMiddleware, metrics=metrics, route_of=lambda s: _route_of(app, s))

    @app.post("/eureka/apps/{app_name}", status_code=201)
    def register(app_name: AppName, body: RegisterRequest) -> LeaseOut:
        instance = reg.register(
            app_name, body.instance_id, body.host, body.port, body.status, body.metadata
        )
        return LeaseOut(instance=InstanceOut.of(instance), lease_seconds=reg.lease_seconds)

    @app.put("/eureka/apps/{app_name}/{instance_id}")
    def heartbeat(app_name: AppName, instance_id: InstanceId) -> LeaseOut:
        try:
            instance = reg.renew(app_name, instance_id)
        except UnknownInstanceError as exc:
            raise _not_registered(exc) from exc
        return LeaseOut(instance=InstanceOut.of(instance), lease_seconds=reg.lease_seconds)

    @app.delete("/eureka/apps/{app_name}/{instance_id}", status_code=204)
    def cancel(app_name: AppName, instance_id: InstanceId) -> Response:
        try:
            reg.cancel(app_name, instance_id)
        except UnknownInstanceError as exc:
            raise _not_registered(exc) from exc
        return Response(status_code=204)

    @app.get("/eureka/apps")
    def all_apps() -> RegistryOut:
        snap = reg.snapshot()
        apps = {name: [InstanceOut.of(i) for i in insts] for name, insts in snap.apps.items()}
        return RegistryOut(epoch=snap.epoch, version=snap.version, apps=apps)

    # Declared before /eureka/apps/{app_name} so "delta" is not read as an app name.
    @app.get("/eureka/apps/delta")
    def delta(since: Annotated[int, Query(ge=0)], epoch: str | None = None) -> DeltaOut:
        d = reg.delta(since, epoch)
        changes = [ChangeOut.of(c) for c in d.changes]
        return DeltaOut(
            epoch=d.epoch,
            version=d.version,
            full_refresh_required=d.full_refresh_required,
            changes=changes,
        )

    @app.get("/eureka/apps/{app_name}")
    def one_app(app_name: AppName) -> AppOut:
        version = reg.version  # read first: the answer is at least this fresh
        instances = reg.instances_of(app_name)
        if not instances:
            raise HTTPException(404, f"no instances of app {app_name!r} are registered")
        return AppOut(
            app=app_name, version=version, instances=[InstanceOut.of(i) for i in instances]
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        code = 200 if lifecycle.ready else 503
        return JSONResponse({"ready": lifecycle.ready}, status_code=code)

    @app.get("/version")
    def version() -> dict[str, str]:
        return {"version": __version__}

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _evict_forever(registry: Registry, metrics: Metrics, interval: float) -> None:
    """Evict expired leases every `interval` seconds until cancelled; never dies on error."""
    while True:
        await asyncio.sleep(interval)
        try:
            evicted = await asyncio.to_thread(registry.evict_expired)
        except Exception:
            logger.exception("eviction pass failed; retrying in %s s", interval)
            continue
        if evicted:
            metrics.evicted(len(evicted))
            names = ", ".join(f"{i.app}/{i.instance_id}" for i in evicted)
            logger.info("evicted %d expired instance(s): %s", len(evicted), names)


def _not_registered(exc: UnknownInstanceError) -> HTTPException:
    # The message tells the client what to do: a 404 heartbeat means "register again".
    return HTTPException(404, f"{exc.args[0]}; re-register with POST /eureka/apps/{exc.app}")


def _route_of(app: FastAPI, scope: Scope) -> str:
    """The route template for a request, mirroring the router's FULL-then-PARTIAL rule.

    Templates, not raw paths, keep metric cardinality bounded by the route table.
    """
    partial: str | None = None
    for route in app.router.routes:
        match, _ = route.matches(scope)
        path = str(getattr(route, "path", "unmatched"))
        if match is Match.FULL:
            return path
        if match is Match.PARTIAL and partial is None:
            partial = path
    return partial or "unmatched"


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """422 whose `detail` names each offending field, e.g. "body.port: Input should be..."."""
    errors = [
        {"field": ".".join(str(part) for part in err["loc"]), "message": str(err["msg"])}
        for err in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)
