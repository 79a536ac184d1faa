"""HTTP API: a FastAPI app factory over the log, the consumer groups and the views job,
built on servicekit.

servicekit supplies /healthz, /readyz, /metrics and /version, the request metrics, JSON
logs, error answers, the body size limit, fault injection and draining; this module adds
the streaming routes and the lifespans that open the data directory and run the views
job. Handlers are plain `def`, so FastAPI runs them in its threadpool: appends write and
fsync files under a lock, which must never stall the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from servicekit import (
    ReadinessCheck,
    ServiceConfig,
    build_service,
    discovery_lifespan,
    service_metrics,
    service_state,
)

from streaming.aggregation_store import AggregationStore
from streaming.aggregator import ViewsJob
from streaming.broker import Broker, ReservedGroupError
from streaming.config import Settings
from streaming.files import hold_lock
from streaming.groups import GroupOffsets
from streaming.log import (
    NAME_PATTERN,
    BadPartitionError,
    Log,
    OffsetOutOfRange,
    TopicExistsError,
    UnknownTopicError,
)
from streaming.metrics import StreamingMetrics
from streaming.schemas import (
    CommitRequest,
    CommitResponse,
    FetchResponse,
    GroupFetchResponse,
    GroupOffsetOut,
    GroupOffsetsResponse,
    PartitionOffset,
    Produced,
    ProduceRequest,
    ProduceResponse,
    RecordOut,
    TopicOut,
    TopicRequest,
    TopicsOut,
    ViewsResponse,
    WindowOut,
    from_ms,
    to_ms,
)
from streaming.windows import WINDOW_MS, is_final

__all__ = ["DEFAULT_PORT", "LOCAL_DISCOVERY_URL", "create_app"]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8082
LOCAL_DISCOVERY_URL = "http://127.0.0.1:8761"
DEFAULT_FETCH = 100

GroupName = Annotated[str, Path(pattern=NAME_PATTERN)]
MaxRecords = Annotated[int, Query(alias="max", ge=1)]


def create_app(config: ServiceConfig | None = None, *, settings: Settings | None = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """Build the app. `config` and `settings` default to the environment's; DISCOVERY_URL
    defaults to a discovery on this machine. `clock` (seconds since the epoch) stamps
    records produced without a timestamp.

    Raises ValueError on an invalid setting, so a bad deployment fails at startup.
    """
    config = config or ServiceConfig.from_env(default_port=DEFAULT_PORT)
    settings = settings or Settings.from_env()
    if not config.discovery_urls:
        config = dataclasses.replace(config, discovery_urls=(LOCAL_DISCOVERY_URL,))
    data_dir = settings.data_dir
    log = Log(data_dir, segment_bytes=settings.segment_bytes,
              index_interval_bytes=settings.index_interval_bytes, fsync=settings.fsync,
              clock=clock)
    groups = GroupOffsets(data_dir, fsync=settings.fsync)
    store = AggregationStore(data_dir / "aggregations" / f"{settings.aggregation_topic}.sqlite3",
                             fsync=settings.fsync)
    views_topic = settings.aggregation_topic
    views_group = f"{views_topic}-aggregator"

    @contextlib.asynccontextmanager
    async def open_data_dir(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
        with hold_lock(data_dir / ".lock"):
            try:
                await asyncio.to_thread(log.recover)
                await asyncio.to_thread(groups.recover)
                await asyncio.to_thread(store.open)
                yield
            finally:
                await asyncio.to_thread(store.close)
                await asyncio.to_thread(log.close)

    @contextlib.asynccontextmanager
    async def run_views_job(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(job.start)
        stop = asyncio.Event()
        task = asyncio.create_task(job.run(stop, settings.aggregation_poll_seconds))
        try:
            yield
        finally:
            stop.set()
            await task

    app = build_service("streaming", config, lifespans=[
        open_data_dir, run_views_job, discovery_lifespan(config, watch=False)])
    metrics = StreamingMetrics(service_metrics(app), log, groups)
    metrics.watch_topic(views_topic)
    broker = Broker(log, groups, metrics, fetch_max_bytes=settings.fetch_max_bytes,
                    reserved_groups={views_group})
    job = ViewsJob(broker, store, topic=views_topic, partitions=settings.default_partitions,
                   allowed_lateness_ms=int(settings.aggregation_allowed_lateness_seconds * 1000),
                   retention_ms=int(settings.aggregation_retention_seconds * 1000))
    app.state.broker = broker
    app.state.views_job = job
    state = service_state(app)
    state.add_readiness_check(ReadinessCheck("log-recovered", lambda: log.recovered))
    state.add_readiness_check(ReadinessCheck("views-caught-up", lambda: job.caught_up))
    _install_error_answers(app)

    def capped(max_records: int) -> int:
        return min(max_records, settings.fetch_max_records)

    @app.post("/topics", status_code=201)
    def create_topic(body: TopicRequest) -> TopicOut:
        partitions = body.partitions or settings.default_partitions
        if partitions > settings.max_partitions:
            raise HTTPException(422, f"body.partitions: at most {settings.max_partitions} "
                                     "(MAX_PARTITIONS)")
        return TopicOut.of(log.create_topic(body.name, partitions))

    @app.get("/topics")
    def list_topics() -> TopicsOut:
        return TopicsOut(topics=[TopicOut.of(topic) for topic in log.topics()])

    @app.get("/topics/{topic}")
    def describe_topic(topic: str) -> TopicOut:
        return TopicOut.of(log.topic(topic))

    @app.post("/topics/{topic}/records")
    def produce(topic: str, body: ProduceRequest) -> ProduceResponse:
        if len(body.records) > settings.max_batch_records:
            raise HTTPException(422, f"body.records: at most {settings.max_batch_records} "
                                     "records per request (MAX_BATCH_RECORDS)")
        appended = broker.produce(topic, [(r.key, r.value_bytes(), r.timestamp)
                                          for r in body.records])
        return ProduceResponse(topic=topic, offsets=[Produced.of(a) for a in appended])

    @app.get("/topics/{topic}/partitions/{partition}/records")
    def fetch(topic: str, partition: int, offset: int | None = None,
              max_records: MaxRecords = DEFAULT_FETCH) -> FetchResponse:
        result = broker.fetch(topic, partition, offset, capped(max_records))
        return FetchResponse(
            topic=topic, partition=partition,
            records=[RecordOut.of(partition, record) for record in result.records],
            next_offset=result.next_offset, start_offset=result.start_offset,
            end_offset=result.end_offset)

    @app.post("/groups/{group}/offsets")
    def commit(group: GroupName, body: CommitRequest) -> CommitResponse:
        offsets = {o.partition: o.offset for o in body.offsets}
        try:
            broker.commit(group, body.topic, offsets)
        except OffsetOutOfRange as err:  # a bad body, not a bad read: 400
            raise HTTPException(400, str(err)) from err
        return CommitResponse(group=group, topic=body.topic, offsets=body.offsets)

    @app.get("/groups/{group}/offsets")
    def committed(group: GroupName, topic: str | None = None) -> GroupOffsetsResponse:
        return GroupOffsetsResponse(group=group, offsets=[
            GroupOffsetOut.of(position) for position in broker.positions(group, topic)])

    @app.get("/groups/{group}/topics/{topic}/records")
    def fetch_for_group(group: GroupName, topic: str, max_records: MaxRecords = DEFAULT_FETCH,
                        commit: bool = False) -> GroupFetchResponse:
        fetched = broker.fetch_for_group(group, topic, capped(max_records), commit=commit)
        return GroupFetchResponse(
            group=group, topic=topic,
            records=[RecordOut.of(partition, record) for partition, record in fetched.records],
            positions=[PartitionOffset(partition=p, offset=o)
                       for p, o in sorted(fetched.positions.items())],
            committed=fetched.committed)

    @app.get("/aggregations/views")
    def views(content_id: str | None = None,
              from_: Annotated[datetime | None, Query(alias="from")] = None,
              to: datetime | None = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> ViewsResponse:
        watermark = job.watermark_ms
        rows = store.windows(content_id, None if from_ is None else to_ms(from_),
                             None if to is None else to_ms(to), limit)
        return ViewsResponse(
            topic=views_topic, window_seconds=WINDOW_MS // 1000,
            allowed_lateness_seconds=settings.aggregation_allowed_lateness_seconds,
            watermark=None if watermark is None else from_ms(watermark),
            windows=[WindowOut(content_id=row.content_id,
                               window_start=from_ms(row.window_start_ms),
                               window_end=from_ms(row.window_start_ms + WINDOW_MS),
                               count=row.count, late=row.late,
                               final=is_final(row.window_start_ms, watermark))
                     for row in rows])

    return app


def _install_error_answers(app: FastAPI) -> None:
    """The log's errors as answers a client can act on; the detail says what is valid."""

    def answer(status: int) -> Callable[[Request, Exception], JSONResponse]:
        def respond(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return respond

    app.add_exception_handler(UnknownTopicError, answer(404))
    app.add_exception_handler(BadPartitionError, answer(400))

    def out_of_range(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OffsetOutOfRange)
        return JSONResponse({"detail": str(exc), "start_offset": exc.start_offset,
                             "end_offset": exc.end_offset}, status_code=416)

    app.add_exception_handler(OffsetOutOfRange, out_of_range)
    app.add_exception_handler(TopicExistsError, answer(409))
    app.add_exception_handler(ReservedGroupError, answer(403))

    def storage_failed(request: Request, exc: Exception) -> JSONResponse:
        logger.error("storage error serving %s %s", request.method, request.url.path,
                     exc_info=exc)
        return JSONResponse({"detail": f"storage error: {exc}; retry later"},
                            status_code=503)

    app.add_exception_handler(OSError, storage_failed)
