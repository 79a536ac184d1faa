"""Shipyard's own metrics: ``GET /metrics``, in Prometheus' exposition format.

The flows run in Prefect's worker processes, not in this one, so counters kept in this
process would miss nearly everything. :class:`StoreCollector`, on a registry of its own
(:func:`metrics_registry`), reads the store when it is scraped instead, and answers
scrapes from that reading for :data:`CACHE_SECONDS`: scrapers asking at once, or a
stranger asking often (the route needs no sign-in), cost one reading.

The counters and histograms count what happened **since this process started** (a
counter's ``_created`` sample says when), not the rows the store holds: ``shipyard gc``
deletes old runs and deliveries, and a counter that goes down is taken by Prometheus for
a restart from zero, so every row still kept would be counted again. A ui that restarts
starts from zero, which ``rate()`` and ``increase()`` expect.

Events are read past marks (:class:`StoreReader`). What is older than :data:`SETTLE` is
added to a running total once and never read again; what is newer is read again at each
scrape, since a row can become visible late: a webhook delivery's time is taken before
its write waits for the lock, and PostgreSQL hands out ids before commit, so a lower id
can commit after a higher one. A scrape therefore reads the last two minutes of events and
the runs not running now, and once every :data:`DORA_SECONDS` DORA's half year of
production releases, whatever else the history holds.

Everything exported is an aggregate over code-defined names (pipelines, states, stage
kinds, audit actions, the environment): no run, repository, user or message appears.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shipyard.domain.deployments import REQUIRED_DEPLOYMENTS
from shipyard.domain.dora import DoraReport
from shipyard.domain.repositories import NOT_ALLOWED
from shipyard.domain.states import State
from shipyard.settings import Settings
from shipyard.store import Store
from shipyard.store.metrics_queries import MetricsQueries, PendingRuns, RunEvent, StageEnd
from ui.releases import production_dora
from ui.webhooks import DUPLICATE

__all__ = [
    "CACHE_SECONDS",
    "DORA_SECONDS",
    "HAND_OVER_BUCKETS",
    "SETTLE",
    "STAGE_BUCKETS",
    "Histogram",
    "Reading",
    "StoreCollector",
    "StoreReader",
    "Tally",
    "metrics_registry",
    "router",
    "stage_kind",
]

log = logging.getLogger("shipyard.ui.metrics")

CACHE_SECONDS = 10.0
"""How long a reading answers scrapes: shorter than Prometheus' usual 15 s interval."""

DORA_SECONDS = 60.0
"""How long DORA's report is kept: its windows are days long, and making it reads half a
year of production releases, manifests included."""

SETTLE = timedelta(seconds=120)
"""How old an event must be to be counted for good: longer than a write waits for a lock
(SQLite's 30 s busy timeout, and its retries)."""

STAGE_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
                 3600.0, 7200.0, 14400.0)
"""From a checkout's second to a judgment's hours."""

HAND_OVER_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
"""From a warm worker's fraction of a second to the hour a run waits while Prefect is
down."""

PIPELINES = REQUIRED_DEPLOYMENTS
"""Pipelines whose series exist (at zero) before their first run."""

RUN_OUTCOMES = (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.ROLLED_BACK)
REPAIRS = ("run.abandoned", "ledger.repaired")
"""Audit actions of the sweeper's repairs (pipelines/sweeper.py, pipelines/drift.py)."""
DRIFT = "ledger.drift"
"""The audit action of a drift found and reported, not repaired."""

_DELIVERY_KINDS = {DUPLICATE: "duplicate", NOT_ALLOWED: "not_allowed"}
_DELIVERY_REASONS = (("accepted", "started_run"), ("ignored", "duplicate"),
                     ("ignored", "not_allowed"), ("ignored", "filtered"))
_WAITING_FOR = ("prefect", "worker", "judgment")
_FIRST_STAGE_STARTED = "StageStarted"  # the run's reason when its flow starts its work
_REUSED = "Reused"  # a stage a restart took over from an earlier run: nothing ran


def stage_kind(ref: str) -> str:
    """What a stage does, from its ref: the part before ``:`` (``build`` of
    ``build:gateway``; the environment of a deploy such as ``prod:gateway``)."""
    return ref.partition(":")[0]


@dataclass
class Histogram:
    """Observations counted per bucket: ``counts[i]`` holds those at most ``bounds[i]``
    and above the bound before it; the last count, those above every bound."""

    bounds: tuple[float, ...]
    counts: list[int]
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls(bounds, [0] * (len(bounds) + 1))

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def __add__(self, other: Histogram) -> Histogram:
        if other.bounds != self.bounds:
            raise ValueError("histograms of different buckets cannot be added")
        return Histogram(self.bounds, [a + b for a, b in zip(self.counts, other.counts,
                                                             strict=True)],
                         self.total + other.total)

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus' buckets: the count at or below each bound, ``+Inf`` last."""
        buckets, seen = [], 0
        for bound, count in zip([*map(repr, self.bounds), "+Inf"], self.counts, strict=True):
            seen += count
            buckets.append((bound, float(seen)))
        return buckets


@dataclass
class Tally:
    """What happened in a stretch of the store's history. Tallies of stretches that do
    not overlap add up to the tally of both."""

    runs_started: Counter[str] = field(default_factory=Counter)
    runs_finished: Counter[tuple[str, str]] = field(default_factory=Counter)
    hand_over: dict[str, Histogram] = field(default_factory=dict)
    stages: dict[str, Histogram] = field(default_factory=dict)
    deliveries: Counter[tuple[str, str]] = field(default_factory=Counter)
    audits: Counter[str] = field(default_factory=Counter)

    def count_run(self, event: RunEvent) -> None:
        if event.to_state is State.RUNNING:
            self.runs_started[event.pipeline] += 1
            # "Started" is the store settling a run that never started any work
            # (abandoned, or ended by its flow with nothing to do): no hand-over measured.
            if event.reason == _FIRST_STAGE_STARTED:
                self.hand_over.setdefault(
                    event.pipeline, Histogram.empty(HAND_OVER_BUCKETS)).observe(
                        max(event.since_created, 0.0))
        else:
            self.runs_finished[event.pipeline, event.to_state.value] += 1

    def count_stage(self, end: StageEnd) -> None:
        if end.reason != _REUSED:
            self.stages.setdefault(stage_kind(end.ref), Histogram.empty(STAGE_BUCKETS)
                                   ).observe(max(end.seconds, 0.0))

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.runs_started + other.runs_started,
                     self.runs_finished + other.runs_finished,
                     _add(self.hand_over, other.hand_over), _add(self.stages, other.stages),
                     self.deliveries + other.deliveries, self.audits + other.audits)


def _add(first: dict[str, Histogram], second: dict[str, Histogram]) -> dict[str, Histogram]:
    both = dict(first)
    for key, histogram in second.items():
        both[key] = both[key] + histogram if key in both else histogram
    return both


@dataclass(frozen=True)
class Reading:
    """One reading of the store: the events since ``started`` (a :class:`Tally`), the runs
    not running now, DORA's report, and how long reading took."""

    started: datetime
    events: Tally
    pending: Sequence[PendingRuns]
    dora: DoraReport
    seconds: float


class StoreReader:
    """Reads the store for the metrics, keeping the settled part of the events (see the
    module). Not thread-safe: :class:`StoreCollector` reads under its lock."""

    def __init__(self, store: Store, *, environment: str, settle: timedelta = SETTLE) -> None:
        self.store = store
        self.environment = environment
        self.settle = settle
        self.queries = MetricsQueries(store)
        self.started = store.clock()
        self._id_mark = self.queries.newest_transition_id()
        self._time_mark = self.started
        self._settled = Tally()
        self._dora: tuple[datetime, DoraReport] | None = None

    def read(self) -> Reading:
        """Everything the metrics show, as of now. A failed read changes no mark."""
        began = time.perf_counter()
        now = self.store.clock()
        id_mark = self.queries.transition_id_before(self._id_mark, now - self.settle)
        time_mark = max(self._time_mark, now - self.settle)
        settled = self._settled + self._tally(self._id_mark, id_mark, self._time_mark,
                                              time_mark)
        recent = self._tally(id_mark, None, time_mark, None)
        pending = self.queries.pending_runs()
        if self._dora is None or not _fresh(now, self._dora[0], DORA_SECONDS):
            self._dora = now, production_dora(self.store, self.environment)
        self._settled, self._id_mark, self._time_mark = settled, id_mark, time_mark
        return Reading(self.started, settled + recent, pending, self._dora[1],
                       time.perf_counter() - began)

    def _tally(self, after_id: int, up_to_id: int | None, since: datetime,
               before: datetime | None) -> Tally:
        """The events with ids in (``after_id``, ``up_to_id``] and times in [``since``,
        ``before``); None is no bound."""
        tally = Tally()
        if up_to_id is None or up_to_id > after_id:
            for event in self.queries.run_events(after_id, up_to_id):
                tally.count_run(event)
            for end in self.queries.stage_ends(after_id, up_to_id):
                tally.count_stage(end)
        if before is None or before > since:
            for delivery in self.queries.deliveries(since, before, kinds=list(_DELIVERY_KINDS)):
                reason = _DELIVERY_KINDS.get(delivery.kind) or (
                    "started_run" if delivery.outcome == "accepted" else "filtered")
                tally.deliveries[delivery.outcome, reason] += delivery.count
            tally.audits.update(self.queries.audit_actions([*REPAIRS, DRIFT], since, before))
        return tally


class StoreCollector(Collector):
    """The metrics of a :class:`StoreReader`'s readings, each reading answering for
    ``cache_seconds`` of the store's clock; scrapes arriving together wait for one."""

    def __init__(self, reader: StoreReader, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.reader = reader
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._read_at: datetime | None = None

    def describe(self) -> Iterable[Metric]:
        """The families without samples: registering reads nothing."""
        return list(_families(None))

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            now = self.reader.store.clock()
            if self._read_at is None or not _fresh(now, self._read_at, self.cache_seconds):
                self._families = list(_families(self.reader.read()))
                self._read_at = now
            return list(self._families)


def _fresh(now: datetime, then: datetime, seconds: float) -> bool:
    """Whether what was made at ``then`` is younger than ``seconds``. A wall clock set back
    would make it look young for as long as it went back: it is made again."""
    return timedelta(0) <= now - then < timedelta(seconds=seconds)


def metrics_registry(store: Store, settings: Settings) -> CollectorRegistry:
    """A registry of its own (never the process-wide one) holding a :class:`StoreCollector`
    over ``store``, counting from now. Blocking: it reads the store's newest change."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StoreCollector(
        StoreReader(store, environment=settings.production_environment)))
    return registry


# -- the families ---------------------------------------------------------------------------


def _families(reading: Reading | None) -> Iterator[Metric]:
    """Every family, with its samples from ``reading`` (None: the families alone)."""
    yield from _run_families(reading)
    yield from _delivery_and_repair_families(reading)
    yield from _pending_families(reading)
    yield from _dora_families(reading)
    read = GaugeMetricFamily(
        "shipyard_metrics_read_seconds",
        "How long the last reading of the store for these metrics took (a reading answers "
        f"scrapes for {CACHE_SECONDS:g} s).")
    if reading is not None:
        read.add_metric([], reading.seconds)
    yield read


def _run_families(reading: Reading | None) -> Iterator[Metric]:
    since = "since this ui process started (its _created sample), the flows' runs included"
    started = CounterMetricFamily(
        "shipyard_runs_started", f"Runs that left the queue and started, by pipeline, {since}.",
        labels=["pipeline"])
    finished = CounterMetricFamily(
        "shipyard_runs_finished",
        f"Runs that reached a final state, by pipeline and state, {since}; a finished run "
        "rolled back later is not counted again.", labels=["pipeline", "state"])
    stages = HistogramMetricFamily(
        "shipyard_stage_duration_seconds",
        "How long stages ran, from their start to their final state, by kind (the ref before "
        "':': build for build:gateway, the environment for a deploy such as prod:gateway); "
        f"stages a restart reused are left out; {since}.", labels=["kind"])
    hand_over = HistogramMetricFamily(
        "shipyard_hand_over_latency_seconds",
        "Seconds from a run being recorded (queued) to its first stage starting: Prefect "
        "taking it, a worker picking it up and the flow starting. The store keeps no time of "
        f"the hand-over alone, so this is the closest it records; by pipeline, {since}.",
        labels=["pipeline"])
    if reading is not None:
        created = reading.started.timestamp()
        events = reading.events
        for pipeline in sorted({*PIPELINES, *events.runs_started}):
            started.add_metric([pipeline], events.runs_started[pipeline], created=created)
        outcomes = {*((p, s.value) for p in PIPELINES for s in RUN_OUTCOMES),
                    *events.runs_finished}
        for pipeline, state in sorted(outcomes):
            finished.add_metric([pipeline, state], events.runs_finished[pipeline, state],
                                created=created)
        for kind, histogram in sorted(events.stages.items()):
            stages.add_metric([kind], histogram.cumulative(), histogram.total)
        for pipeline in sorted({*PIPELINES, *events.hand_over}):
            waits = events.hand_over.get(pipeline) or Histogram.empty(HAND_OVER_BUCKETS)
            hand_over.add_metric([pipeline], waits.cumulative(), waits.total)
    yield from (started, finished, stages, hand_over)


def _delivery_and_repair_families(reading: Reading | None) -> Iterator[Metric]:
    since = "since this ui process started (its _created sample)"
    deliveries = CounterMetricFamily(
        "shipyard_webhook_deliveries",
        "Webhook deliveries recorded, by outcome (accepted, ignored) and reason (started_run; "
        "duplicate: a replay of a push that started a run; not_allowed: the repository "
        "allow-list; filtered: the push triggers). Deliveries refused before they are "
        f"recorded (signature, malformed, throttled) are not counted; {since}.",
        labels=["outcome", "reason"])
    repairs = CounterMetricFamily(
        "shipyard_sweeper_repairs",
        "Repairs of the run sweeper, from the audit trail, by action: run.abandoned (a run "
        "whose process died, settled failed), ledger.repaired (the ledger made to name what "
        f"the cluster serves); {since}.", labels=["action"])
    drift = CounterMetricFamily(
        "shipyard_ledger_drift",
        "Drift the sweeper's drift reconciler found and could not explain (audited "
        f"ledger.drift): reported, not repaired; {since}.")
    if reading is not None:
        created = reading.started.timestamp()
        events = reading.events
        for outcome, reason in sorted({*_DELIVERY_REASONS, *events.deliveries}):
            deliveries.add_metric([outcome, reason], events.deliveries[outcome, reason],
                                  created=created)
        for action in REPAIRS:
            repairs.add_metric([action], events.audits[action], created=created)
        drift.add_metric([], events.audits[DRIFT], created=created)
    yield from (deliveries, repairs, drift)


def _pending_families(reading: Reading | None) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "shipyard_queue_depth",
        "Runs not running now, by pipeline and what they wait for: prefect (queued, no flow "
        "run has taken them), worker (taken, not started yet), judgment (waiting for a "
        "manual judgment).", labels=["pipeline", "waiting_for"])
    if reading is not None:
        waiting: Counter[tuple[str, str]] = Counter()
        for runs in reading.pending:
            if runs.state is State.WAITING:
                waiting[runs.pipeline, "judgment"] += runs.count
            else:
                waiting[runs.pipeline, "prefect"] += runs.count - runs.handed_over
                waiting[runs.pipeline, "worker"] += runs.handed_over
        for pipeline in sorted({*PIPELINES, *(r.pipeline for r in reading.pending)}):
            for what in _WAITING_FOR:
                depth.add_metric([pipeline, what], waiting[pipeline, what])
    yield depth


def _dora_families(reading: Reading | None) -> Iterator[Metric]:
    labels = ["environment", "window_days"]
    of = ("of the deployments reaching the environment in the window of that many days "
          f"ending now (as the DORA page computes it, every {DORA_SECONDS:g} s)")
    frequency = GaugeMetricFamily(
        "shipyard_dora_deployment_frequency_per_day",
        f"DORA deployment frequency: deploys and promotes per day, {of}.", labels=labels)
    lead_time = GaugeMetricFamily(
        "shipyard_dora_lead_time_seconds",
        f"DORA lead time for changes, commit to deployment, at a quantile (0.5, 0.9), {of}; "
        "absent when no commit time is known.", labels=[*labels, "quantile"])
    failure = GaugeMetricFamily(
        "shipyard_dora_change_failure_ratio",
        f"DORA change failure rate: failed (rolled back) deployments over deployments, {of}; "
        "absent without deployments.", labels=labels)
    recovery = GaugeMetricFamily(
        "shipyard_dora_recovery_time_seconds",
        f"DORA failed-deployment recovery time, the median, {of}; absent without a "
        "recovered failure.", labels=labels)
    rework = GaugeMetricFamily(
        "shipyard_dora_rework_ratio",
        f"DORA rework rate (the fifth metric, 2024): unplanned changes (rollbacks) over all "
        f"changes, {of}; absent without changes.", labels=labels)
    if reading is not None:
        for days, window in sorted(reading.dora.overall.items()):
            current, named = window.current, [reading.dora.environment, str(days)]
            frequency.add_metric(named, current.deployments_per_day)
            for quantile, value in (("0.5", current.lead_time_median),
                                    ("0.9", current.lead_time_p90)):
                if value is not None:
                    lead_time.add_metric([*named, quantile], value.total_seconds())
            if current.change_fail_rate is not None:
                failure.add_metric(named, current.change_fail_rate)
            if current.recovery_time_median is not None:
                recovery.add_metric(named, current.recovery_time_median.total_seconds())
            if current.rework_rate is not None:
                rework.add_metric(named, current.rework_rate)
    yield from (frequency, lead_time, failure, recovery, rework)


# -- the route ------------------------------------------------------------------------------

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """The metrics, for anyone who asks, like ``/healthz``: Prometheus scrapes without a
    session, and only aggregates are shown (see the module). In OpenMetrics when the
    scraper asks for it."""
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics", None)
    if registry is None:
        return PlainTextResponse("the ui is starting\n", status_code=503)
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    try:
        body = encode(registry)
    except Exception:  # the store is unreachable, say: the scrape fails, the ui goes on
        log.exception("reading the store for /metrics failed")
        return PlainTextResponse("the store cannot be read; the ui's log says why\n",
                                 status_code=503)
    return Response(body, headers={"Content-Type": content_type})
