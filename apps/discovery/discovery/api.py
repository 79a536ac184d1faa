"""HTTP API: a FastAPI app factory over a Registry, built on servicekit.

servicekit supplies /healthz, /readyz, /metrics and /version, the request metrics, JSON
logs, error answers and the body size limit; this module adds the registry's routes and
its eviction loop. Handlers are plain `def` so FastAPI runs them in its threadpool: the
registry uses a blocking lock, which must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query, Response
from servicekit import ServiceConfig, build_service, service_metrics
from servicekit.background import in_background

from discovery.config import Settings
from discovery.metrics import RegistryMetrics
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


def create_app(
    config: ServiceConfig | None = None,
    *,
    settings: Settings | None = None,
    registry: Registry | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """Build the app. `config` and `settings` default to the environment's; `clock` feeds
    the registry built here, so pass `registry` or `clock`, not both.

    Raises ValueError on an invalid setting (LEASE_SECONDS, EVICTION_INTERVAL_SECONDS or
    any of servicekit's) so a bad deployment fails at startup, not at the first eviction.
    """
    config = config or ServiceConfig.from_env(default_port=8761)
    settings = settings or Settings.from_env()
    if registry is None:
        registry = Registry(clock or time.monotonic, settings.lease_seconds)
    elif clock is not None:
        raise ValueError("pass clock only when create_app builds the registry")
    reg = registry  # narrowed for the closures below

    @contextlib.asynccontextmanager
    async def evict_expired(app: FastAPI) -> AsyncIterator[None]:
        metrics: RegistryMetrics = app.state.registry_metrics
        async with in_background(
                _evict_forever(reg, metrics, settings.eviction_interval_seconds)):
            yield

    app = build_service("discovery", config, lifespans=[evict_expired])
    app.state.registry = reg
    # On the app, not in the lifespan: series can be registered only once per app.
    app.state.registry_metrics = RegistryMetrics(service_metrics(app), reg.count)

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

    return app


async def _evict_forever(registry: Registry, metrics: RegistryMetrics, interval: float) -> None:
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
