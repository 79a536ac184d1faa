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
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from pipelines.handover import Reconciler, StartDeployment
from shipyard import __version__
from shipyard.adapters.prefect import PrefectError, PrefectUnavailable, start_deployment
from shipyard.settings import Settings
from shipyard.store import AmbiguousRunId, Ledger, RunNotFound, Store
from stages.judgments_service import InvalidAnswer, JudgmentError, answer_judgment
from ui import webhooks

__all__ = ["create_app"]


class JudgmentBody(BaseModel):
    """An answer to a manual judgment, as the API takes it."""

    decision: Literal["approve", "reject"]
    comment: str = ""
    actor: str = ""


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
        app.state.store = opened
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

    @app.post("/api/runs/{run_id}/judgment")
    async def answer_run_judgment(run_id: str, body: JudgmentBody,
                                  request: Request) -> JSONResponse:
        """Approve or reject the manual judgment run ``run_id`` (any unique prefix), or a run
        it started, waits for: 202 with the answer Prefect took (the flow records it and
        goes on within seconds); 404 no such run; 409 not waiting, answered already, or
        timed out; 422 a malformed answer or a rejection without a comment; 503 Prefect
        unreachable. No authentication yet (it comes with the UI issue): the actor is
        whoever the caller says it is."""
        try:
            answer = await answer_judgment(request.app.state.store, run_id, body.decision,
                                           actor=body.actor, comment=body.comment)
        except (RunNotFound, AmbiguousRunId) as err:
            return JSONResponse({"error": str(err)}, status_code=404)
        except InvalidAnswer as err:
            return JSONResponse({"error": str(err)}, status_code=422)
        except JudgmentError as err:
            return JSONResponse({"error": str(err)}, status_code=409)
        except PrefectUnavailable as err:
            return JSONResponse({"error": str(err)}, status_code=503)
        except PrefectError as err:
            return JSONResponse({"error": str(err)}, status_code=502)
        return JSONResponse(answer.to_json(), status_code=202)

    return app
