"""The Shipyard web application: the GitHub webhook, the REST API and the pages.

:func:`create_app` builds it from the settings; ``shipyard ui`` serves it with uvicorn.
Everything but the webhook (signed by GitHub's secret), ``/healthz`` and the sign-in page
needs an account (see :mod:`ui.auth`). ``/docs`` shows the API with Swagger UI, served
from the package (vendored from the npm registry), never from a CDN.
While it runs, a :class:`~pipelines.handover.Reconciler` hands queued runs to Prefect:
once at startup (runs left by a previous process, or recorded while Prefect was down),
every ``SHIPYARD_HAND_OVER_INTERVAL_SECONDS``, and at once when the webhook records one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from pipelines.handover import Reconciler, StartDeployment
from shipyard import __version__
from shipyard.adapters.prefect import start_deployment
from shipyard.domain.throttle import SignInThrottle
from shipyard.settings import Settings
from shipyard.store import Accounts, Ledger, Store
from shipyard.store.browse import RunBrowser
from ui import api, pages, webhooks
from ui.auth import LoginRequired, login_redirect, secret_key
from ui.live import ChangeFeed

__all__ = ["create_app"]

STATIC = Path(__file__).with_name("static")
SESSION_COOKIE = "shipyard_session"


def create_app(settings: Settings, *, store: Store | None = None,
               start: StartDeployment = start_deployment,
               prefect_ui: str | None = None) -> FastAPI:
    """The application. ``store`` is opened from the settings at startup (and closed at
    shutdown) unless given; ``start`` is how runs are handed to Prefect; ``prefect_ui``
    is where the run pages link a flow run to."""
    config = webhooks.WebhookConfig.from_settings(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened: Store = (store if store is not None
                         else await asyncio.to_thread(Store.open, settings.store_url))
        reconciler = Reconciler(opened, interval_seconds=settings.hand_over_interval_seconds,
                                start=start)
        app.state.webhooks = webhooks.Webhooks(config, Ledger(opened), reconciler.wake)
        app.state.store = opened
        app.state.accounts = Accounts(opened)
        app.state.feed = ChangeFeed(RunBrowser(opened))
        tasks = [asyncio.create_task(reconciler.run(), name="hand-over reconciler"),
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
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.prefect_ui = prefect_ui
    app.state.sign_in_throttle = SignInThrottle()
    app.add_middleware(SessionMiddleware, secret_key=secret_key(settings),
                       session_cookie=SESSION_COOKIE, same_site="lax",
                       https_only=settings.ui_secure_cookies,
                       max_age=int(settings.ui_session_hours * 3600))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(webhooks.router)
    app.include_router(api.router)
    app.include_router(pages.router)

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

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"ok": True, "version": __version__})

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="Shipyard API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png")

    return app


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")
