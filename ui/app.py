"""The Shipyard web application: the GitHub webhook now, the UI and the API later.

:func:`create_app` builds it from the settings; ``shipyard ui`` serves it with uvicorn.
While it runs, a :class:`~pipelines.handover.Reconciler` hands queued runs to Prefect:
once at startup (runs left by a previous process, or recorded while Prefect was down),
every ``SHIPYARD_HAND_OVER_INTERVAL_SECONDS``, and at once when the webhook records one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from pipelines.handover import Reconciler, StartDeployment
from shipyard import __version__
from shipyard.adapters.prefect import start_deployment
from shipyard.settings import Settings
from shipyard.store import Ledger, Store
from ui import webhooks

__all__ = ["create_app"]


def create_app(settings: Settings, *, store: Store | None = None,
               start: StartDeployment = start_deployment) -> FastAPI:
    """The application. ``store`` is opened from the settings at startup (and closed at
    shutdown) unless given; ``start`` is how runs are handed to Prefect."""
    config = webhooks.WebhookConfig.from_settings(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened: Store = (store if store is not None
                         else await asyncio.to_thread(Store.open, settings.store_url))
        reconciler = Reconciler(opened, interval_seconds=settings.hand_over_interval_seconds,
                                start=start)
        app.state.webhooks = webhooks.Webhooks(config, Ledger(opened), reconciler.wake)
        task = asyncio.create_task(reconciler.run(), name="hand-over reconciler")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if store is None:
                opened.close()

    app = FastAPI(title="Shipyard", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(webhooks.router)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"ok": True, "version": __version__})

    return app
