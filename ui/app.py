"""The Shipyard web application: the GitHub webhook, the REST API and the pages.

:func:`create_app` builds it from the settings; ``shipyard ui`` serves it with uvicorn.
Everything but the webhook (signed by GitHub's secret), ``/healthz``, ``/metrics``
(aggregates only, for Prometheus, which scrapes without a session: :mod:`ui.metrics`),
the sign-in page and the static files needs an account (see :mod:`ui.auth`), the API's
documentation too:
``/docs`` shows it with Swagger UI, served from the package (vendored from the npm
registry), never from a CDN, and ``/openapi.json`` needs a viewer as the API does.

Around every request, outermost first: security headers on every answer
(:mod:`ui.headers`); the client's address and scheme from a trusted proxy's
``X-Forwarded-*`` headers, only when ``SHIPYARD_TRUSTED_PROXIES`` names it; and the Host
allow-list (Starlette's ``TrustedHostMiddleware``, :mod:`shipyard.domain.hosts`: the
loopback names, the bound address and ``SHIPYARD_UI_ALLOWED_HOSTS``), against DNS
rebinding.
While it runs, a :class:`~pipelines.sweeper.Sweeper` settles runs whose process died, and
a :class:`~pipelines.handover.Reconciler` hands queued runs to Prefect:
once at startup (runs left by a previous process, or recorded while Prefect was down),
every ``SHIPYARD_HAND_OVER_INTERVAL_SECONDS``, and at once when the webhook records one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from pipelines.handover import Reconciler, StartDeployment
from pipelines.sweeper import Sweeper
from shipyard import __version__
from shipyard.adapters.prefect import start_deployment
from shipyard.domain.access import Role
from shipyard.domain.hosts import allowed_hosts
from shipyard.domain.stream_slots import StreamSlots
from shipyard.domain.throttle import SignInThrottle
from shipyard.settings import Settings
from shipyard.store import Accounts, Ledger, Store
from shipyard.store.browse import RunBrowser
from shipyard.store.notify import change_signal
from shipyard.store.sessions import Sessions
from ui import api, metrics, pages, webhooks
from ui.auth import (
    LoginRequired,
    Principal,
    api_principal,
    live_credentials,
    login_redirect,
    page_principal,
    secret_key,
)
from ui.environments import cluster_cache
from ui.headers import SECURITY_HEADERS, SecurityHeadersMiddleware
from ui.live import ChangeFeed

__all__ = ["create_app"]

STATIC = Path(__file__).with_name("static")


def create_app(settings: Settings, *, store: Store | None = None,
               start: StartDeployment = start_deployment,
               prefect_ui: str | None = None, bound_host: str | None = None) -> FastAPI:
    """The application. ``store`` is opened from the settings at startup (and closed at
    shutdown) unless given; ``start`` is how runs are handed to Prefect; ``prefect_ui``
    is where the run pages link a flow run to; ``bound_host`` is the address served on,
    answered as a Host besides the loopback names. Raises
    :class:`ui.auth.UiKeyError` when the UI key is too short (the UI must not start)."""
    config = webhooks.WebhookConfig.from_settings(settings)
    ui_key = secret_key(settings).encode()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened: Store = (store if store is not None
                         else await asyncio.to_thread(Store.open, settings.store_url))
        reconciler = Reconciler(opened, interval_seconds=settings.hand_over_interval_seconds,
                                start=start)
        app.state.webhooks = webhooks.Webhooks(config, Ledger(opened), reconciler.wake)
        app.state.store = opened
        # Its counters count from here: what the store held before is history, not news.
        app.state.metrics = await asyncio.to_thread(metrics.metrics_registry, opened, settings)
        app.state.accounts = Accounts(opened)
        app.state.sessions = Sessions(opened)
        await asyncio.to_thread(app.state.sessions.prune)
        changes = change_signal(opened.engine)
        app.state.feed = ChangeFeed(
            RunBrowser(opened), slots=StreamSlots(settings.ui_streams_per_identity),
            check_credentials=partial(live_credentials, app.state.accounts,
                                      app.state.sessions), signal=changes)
        sweeper = Sweeper.from_settings(opened, settings)
        tasks = [asyncio.create_task(changes.run(), name="store change listener"),
                 asyncio.create_task(reconciler.run(), name="hand-over reconciler"),
                 asyncio.create_task(sweeper.run(), name="run sweeper"),
                 asyncio.create_task(app.state.feed.run(), name="live change feed")]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if store is None:
                opened.close()

    app = FastAPI(title="Shipyard", version=__version__, lifespan=lifespan,
                  description="Runs, stages, logs and live events of Shipyard's pipelines, "
                  "and the actions on them. Authenticate with `Authorization: Bearer "
                  "shy_...` (`shipyard token create`).",
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.prefect_ui = prefect_ui
    app.state.ui_key = ui_key
    app.state.sign_in_throttle = SignInThrottle()
    app.state.cluster_cache = cluster_cache(settings)  # the environments board's
    # Added innermost first: the headers wrap everything, even the Host check's 400.
    app.add_middleware(TrustedHostMiddleware, www_redirect=False,
                       allowed_hosts=allowed_hosts(settings.ui_allowed_hosts, bound_host))
    if settings.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    app.add_middleware(SecurityHeadersMiddleware)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(webhooks.router)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(metrics.router)

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return login_redirect(exc.next_path)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        """JSON for the API and the webhook; a page for a browser."""
        if request.url.path.startswith(("/api/", "/hooks/")) or not _wants_html(request):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                                headers=exc.headers)
        titles = {401: "Sign in needed", 403: "Not allowed", 404: "Not found",
                  422: "Not understood"}
        return pages.render(request, "error.html", {
            "status": exc.status_code, "title": titles.get(exc.status_code, "Error"),
            "detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        # Starlette answers an unhandled error outside every middleware, so the security
        # headers are added here.
        return JSONResponse({"error": "internal error; the server's log says more"},
                            status_code=500, headers=SECURITY_HEADERS)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"ok": True, "version": __version__})

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: Annotated[Principal, Depends(api_principal(Role.VIEWER))]
                ) -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request,
             _: Annotated[Principal, Depends(page_principal(Role.VIEWER))]) -> Response:
        """Swagger UI, started by static/docs.js (no inline script: the CSP allows none).
        "Try it out" sends the session's CSRF token with what it sends."""
        return pages.render(request, "docs.html", {"openapi_url": "/openapi.json"})

    return app


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")
