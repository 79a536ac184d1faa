"""The gateway app: servicekit's service plus the proxy routes and the upstream view.

servicekit supplies /healthz, /readyz, /metrics and /version, the request metrics, JSON
access logs, error answers, the body size limit, fault injection and graceful shutdown;
discovery_lifespan keeps the registry cache this module routes from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from servicekit import (
    ReadinessCheck,
    ServiceConfig,
    build_service,
    discovery_client,
    discovery_lifespan,
    service_metrics,
)
from starlette.responses import Response

from gateway.balancer import make_balancer
from gateway.config import APP_NAME, DEFAULT_DISCOVERY_URL, GatewaySettings, WeightsSource
from gateway.forwarding import split_api_path, upstream_headers
from gateway.metrics import GatewayMetrics
from gateway.proxy import Forward, Proxy, make_upstream_client
from gateway.upstreams import Upstreams

__all__ = ["NAME", "PROXIED_METHODS", "create_app"]

NAME = "gateway"
PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(
    config: ServiceConfig | None = None,
    *,
    settings: GatewaySettings | None = None,
    breaker_clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the gateway. `config` and `settings` default to the environment's (with
    DISCOVERY_URL defaulting to a discovery on this host, port 8761).

    `breaker_clock` times the circuit breakers' cool-downs, `rand` draws the weighted
    version choices and `transport` carries upstream calls: all three exist for tests.
    Raises ValueError on an invalid setting, so a bad deployment fails at startup.
    """
    config = config or ServiceConfig.from_env(default_port=8080)
    if not config.discovery_urls:
        config = dataclasses.replace(config, discovery_urls=(DEFAULT_DISCOVERY_URL,))
    settings = settings or GatewaySettings.from_env()
    weights = WeightsSource(settings.weights, settings.config_file)

    @contextlib.asynccontextmanager
    async def upstream_client(app: FastAPI) -> AsyncIterator[None]:
        async with make_upstream_client(settings, transport) as http:
            app.state.proxy = Proxy(http, upstreams, gateway_metrics, settings)
            yield

    # Registered like every app, so the registry shows what runs (and draining leaves it);
    # clients still come through the Service, and /api/gateway/... is refused below.
    app = build_service(NAME, config, lifespans=[discovery_lifespan(config), upstream_client])
    upstreams = Upstreams(lambda name: discovery_client(app).instances(name),
                          make_balancer(settings.balancer), settings.breaker,
                          weights.current, rand, breaker_clock)
    # On the app, not in a lifespan: series can be registered only once per app.
    gateway_metrics = GatewayMetrics(service_metrics(app), upstreams)

    def discovery_loaded() -> bool:
        cache = discovery_client(app).cache
        return cache is not None and cache.loaded

    # Routing needs the registry: until a first copy of it arrives, every request would
    # answer 503, so the instance must not be in its Service's endpoints yet.
    app.state.service.add_readiness_check(ReadinessCheck("discovery", discovery_loaded))

    @app.get("/gateway/upstreams")
    async def all_upstreams() -> dict[str, Any]:
        """Every app registered and UP in discovery, routed to yet or not (but the gateway
        itself, which it never routes to): its instances, their outstanding requests,
        breaker state and version; plus the routing settings in force."""
        routable = [name for name in discovery_client(app).apps() if name != NAME]
        return _view(upstreams.describe(routable), settings, weights)

    @app.get("/gateway/upstreams/{app_name}")
    async def app_upstreams(app_name: str) -> dict[str, Any]:
        """One app's instances, whether routed to yet or not."""
        _check_app_name(app_name)
        return _view(upstreams.describe([app_name]), settings, weights)

    async def proxy(request: Request) -> Response:
        raw_path: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
        split = split_api_path(raw_path)
        if split is None:  # the router matched the decoded path, not the raw one
            raise HTTPException(400, "the path must start with /api/<app>/")
        app_name, path = split
        _check_app_name(app_name)
        if app_name == NAME:  # a request routed into itself would loop until it timed out
            raise HTTPException(400, f"the {NAME} does not route to itself")
        query = request.scope.get("query_string", b"").decode("latin-1")
        client = request.client.host if request.client else None
        forward = Forward(
            app=app_name, method=request.method, target=f"{path}?{query}" if query else path,
            headers=upstream_headers(request.scope["headers"], client=client,
                                     scheme=request.url.scheme, prefix=f"/api/{app_name}"),
            body=await request.body())
        the_proxy: Proxy = request.app.state.proxy
        return await the_proxy.forward(forward)

    for path in ("/api/{app_name}", "/api/{app_name}/{path:path}"):
        app.add_api_route(path, proxy, methods=PROXIED_METHODS, include_in_schema=False)
    return app


def _check_app_name(name: str) -> None:
    if not APP_NAME.match(name):
        raise HTTPException(400, f"invalid app name {name!r}: it must be a DNS label "
                                 "(lowercase letters, digits and '-', at most 63)")


def _view(apps: dict[str, list[dict[str, Any]]], settings: GatewaySettings,
          weights: WeightsSource) -> dict[str, Any]:
    return {
        "apps": apps,
        "balancer": settings.balancer,
        "weights": {app: dict(w) for app, w in weights.current().items()},
    }
