"""HTTP API: a FastAPI app factory over the activity store, built on servicekit.

servicekit supplies /healthz, /readyz, /metrics and /version, the request metrics, JSON
logs, error answers and the body size limit; this module adds the activity routes, the
database's readiness check and registration in discovery. Handlers are plain `def` so
FastAPI runs them in its threadpool: database calls block, and must not stall the event
loop.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from servicekit import (
    ServiceConfig,
    build_service,
    discovery_lifespan,
    service_metrics,
    service_state,
)
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from data.bootstrap import SchemaBootstrap
from data.cache import ReadThroughCache
from data.cached_store import CachedActivityStore, CachedValue
from data.config import LOCAL_DISCOVERY_URL, Settings
from data.cursor import InvalidCursorError, decode_cursor, encode_cursor
from data.database import describe_error, make_engine
from data.metrics import DataMetrics
from data.schemas import (
    ID_PATTERN,
    MAX_PAGE,
    ActivityIn,
    ActivityOut,
    BatchIn,
    BatchOut,
    DeletedOut,
    PageOut,
    RecentOut,
)
from data.store import Activity, ActivityStore

__all__ = ["MAX_CLOCK_SKEW", "create_app"]

logger = logging.getLogger(__name__)

# Producers' clocks drift; a time further ahead than this is a bug, and would sit at the
# head of the user's history until the clock caught up with it.
MAX_CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_PAGE = 20

UserId = Annotated[str, Path(pattern=ID_PATTERN)]
ActivityId = Annotated[str, Path(pattern=ID_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


def create_app(
    config: ServiceConfig | None = None,
    *,
    settings: Settings | None = None,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    """Build the app. `config` and `settings` default to the environment's; `clock` drives
    the cache's TTL and `now` stamps and bounds activity times (both for tests).

    Raises ValueError on an invalid setting, so a bad deployment fails at startup. The
    database need not be up: the app starts unready and creates its schema when it is.
    """
    config = config or ServiceConfig.from_env(default_port=8081)
    settings = settings or Settings.from_env()
    if not config.discovery_urls:
        config = dataclasses.replace(config, discovery_urls=(LOCAL_DISCOVERY_URL,))

    bootstrap: SchemaBootstrap  # made below once the metrics exist; entered at startup

    def create_schema(app: FastAPI) -> AbstractAsyncContextManager[None]:
        return bootstrap.lifespan(app)

    app = build_service("data", config,
                        lifespans=[create_schema, discovery_lifespan(config, watch=False)])
    metrics = DataMetrics(service_metrics(app))
    cache: ReadThroughCache[CachedValue] = ReadThroughCache(
        settings.cache_ttl_seconds, settings.cache_max_entries, clock=clock, listener=metrics)
    metrics.count_entries_of(cache)
    store = ActivityStore(make_engine(settings.database_url,
                                      timeout_seconds=settings.db_timeout_seconds),
                          timer=metrics)
    bootstrap = SchemaBootstrap(store)
    service_state(app).add_readiness_check(bootstrap.readiness_check())
    activities = CachedActivityStore(store, cache)
    app.state.activities = activities
    _install_unavailable_handlers(app)

    async def schema_ready() -> None:
        if not bootstrap.ready:
            raise HTTPException(503, "the database is not ready: "
                                     f"{bootstrap.last_error or 'creating the schema'}",
                                headers={"Retry-After": "1"})

    ready = [Depends(schema_ready)]

    @app.post("/activities", status_code=201, dependencies=ready)
    def record_activity(body: ActivityIn, response: Response) -> ActivityOut:
        """201 with the activity stored; 200 with the stored one if its (user_id,
        activity_id) was stored before, whatever this body says."""
        moment = now()
        written = activities.add([_activity_of(body, moment, ("body",))], recorded_at=moment)
        [stored] = written.activities
        if not written.was_created(stored):
            response.status_code = 200
        response.headers["Location"] = f"/users/{stored.user_id}/activities/{stored.activity_id}"
        return ActivityOut.of(stored)

    @app.post("/activities/batch", dependencies=ready)
    def record_activities(body: BatchIn) -> BatchOut:
        """All or nothing, in one transaction; retried activities count as stored."""
        moment = now()
        batch = [_activity_of(item, moment, ("body", "activities", i))
                 for i, item in enumerate(body.activities)]
        _refuse_repeated_ids(batch)
        written = activities.add(batch, recorded_at=moment)
        return BatchOut(created=len(written.created),
                        activities=[ActivityOut.of(a) for a in written.activities])

    @app.get("/activities/recent", dependencies=ready)
    def recent_activities(limit: Limit = DEFAULT_PAGE) -> RecentOut:
        return RecentOut(activities=[ActivityOut.of(a) for a in activities.recent(limit)])

    @app.get("/users/{user_id}/activities", dependencies=ready)
    def user_activities(user_id: UserId, limit: Limit = DEFAULT_PAGE,
                        cursor: Annotated[str | None, Query(max_length=200)] = None) -> PageOut:
        after = None
        if cursor is not None:
            try:
                after = decode_cursor(cursor)
            except InvalidCursorError as err:
                raise _invalid(("query", "cursor"), f"{err}; pass back a next_cursor "
                               "exactly as received, or none for the first page") from None
        page = activities.page(user_id, limit, after)
        return PageOut(user_id=user_id, activities=[ActivityOut.of(a) for a in page.activities],
                       next_cursor=None if page.next is None else encode_cursor(page.next))

    @app.get("/users/{user_id}/activities/{activity_id}", dependencies=ready)
    def user_activity(user_id: UserId, activity_id: ActivityId) -> ActivityOut:
        found = activities.get(user_id, activity_id)
        if found is None:
            raise HTTPException(404, f"user {user_id!r} has no activity {activity_id!r}")
        return ActivityOut.of(found)

    @app.delete("/users/{user_id}/activities", dependencies=ready)
    def forget_user(user_id: UserId) -> DeletedOut:
        """Erase the user's whole history (a GDPR erasure request)."""
        return DeletedOut(user_id=user_id, deleted=activities.delete_user(user_id))

    return app


def _activity_of(body: ActivityIn, now: datetime, location: tuple[str | int, ...]) -> Activity:
    """The activity `body` describes, its defaults filled; 422 if its time is in the future
    beyond MAX_CLOCK_SKEW."""
    activity_time = body.activity_time or now
    if activity_time > now + MAX_CLOCK_SKEW:
        raise _invalid((*location, "activity_time"),
                       f"{activity_time.isoformat()} is in the future (now is "
                       f"{now.isoformat()}; at most {MAX_CLOCK_SKEW} of clock skew is allowed)")
    return Activity(user_id=body.user_id, activity_id=body.activity_id or uuid.uuid4().hex,
                    activity_time=activity_time.astimezone(UTC), content_id=body.content_id,
                    kind=body.kind, payload=dict(body.payload))


def _refuse_repeated_ids(batch: list[Activity]) -> None:
    seen: set[tuple[str, str]] = set()
    for i, activity in enumerate(batch):
        key = (activity.user_id, activity.activity_id)
        if key in seen:
            raise _invalid(("body", "activities", i, "activity_id"),
                           f"{activity.activity_id!r} appears twice for user "
                           f"{activity.user_id!r} in this batch")
        seen.add(key)


def _invalid(location: tuple[str | int, ...], message: str) -> RequestValidationError:
    """A validation error answered like pydantic's: 422, naming the field."""
    return RequestValidationError([{"type": "value_error", "loc": location, "msg": message}])


def _install_unavailable_handlers(app: FastAPI) -> None:
    """The database being unreachable, or every pooled connection busy past the timeout,
    answers 503 (retry elsewhere or later) rather than a 500 (a bug here)."""

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("database unavailable serving %s %s: %s", request.method,
                       request.url.path, describe_error(exc))
        return JSONResponse({"detail": "the database is unavailable; retry shortly"},
                            status_code=503, headers={"Retry-After": "1"})

    for error in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(error, unavailable)
