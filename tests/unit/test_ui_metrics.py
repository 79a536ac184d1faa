"""``GET /metrics``: Shipyard's own metrics, read from a real (SQLite) store by the real
application, with runs, stages, deliveries, releases and audit entries recorded through
the store's own API as the flows, the webhook and the sweeper record them, on a clock the
test moves; and the Grafana dashboard in docs/, held to what /metrics exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from servicekit.metrics import ServiceMetrics
from sqlalchemy import event, text

from shipyard.adapters.prefect_errors import PrefectUnavailable
from shipyard.domain.clock import FrozenClock
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.settings import Settings
from shipyard.store import Ledger, Retention, RunRecord, Store
from shipyard.store.engine import open_engine
from ui.app import create_app
from ui.metrics import CACHE_SECONDS, SETTLE, metrics_registry

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32
OLD_DIGEST = "sha256:" + "cd" * 32


# -- the world ----------------------------------------------------------------------------


async def prefect_refuses(name: str, parameters: dict[str, Any], *,
                          idempotency_key: str | None = None) -> str:
    raise PrefectUnavailable("no Prefect in the unit tests")


def settings_for(home: Path) -> Settings:
    return Settings(home=home, ui_secret_key=SecretStr("k" * 48),
                    hand_over_interval_seconds=3600, sweep_interval_seconds=3600)


def new_store(home: Path) -> tuple[Store, FrozenClock]:
    """A migrated SQLite store whose clock the test moves."""
    url = f"sqlite:///{home / 'shipyard.db'}"
    Store.open(url).close()
    clock = FrozenClock(START)
    return Store(open_engine(url), clock=clock), clock


@dataclass
class Scrape:
    """One answer of /metrics, parsed."""

    families: dict[str, Metric]

    def value(self, sample: str, **labels: str) -> float:
        """The value of the one sample named ``sample`` with exactly ``labels``."""
        found = [s.value for f in self.families.values() for s in f.samples
                 if s.name == sample and s.labels == labels]
        assert len(found) == 1, f"{sample}{labels}: {len(found)} samples"
        return found[0]

    def labels_of(self, sample: str) -> list[dict[str, str]]:
        return [s.labels for f in self.families.values() for s in f.samples
                if s.name == sample]


def parse(text: str) -> Scrape:
    return Scrape({f.name: f for f in text_string_to_metric_families(text)})


@dataclass
class World:
    store: Store
    clock: FrozenClock
    client: TestClient
    settings: Settings

    def scrape(self) -> Scrape:
        """What Prometheus would read now; the cache is passed first, as 15 s would."""
        self.clock.advance(CACHE_SECONDS)
        answer = self.client.get("/metrics")
        assert answer.status_code == 200, answer.text
        return parse(answer.text)

    def run(self, pipeline: str = "ci", stages: Sequence[tuple[str, float]] = (("checkout", 3),),
            *, waited: float = 1.0, outcome: State = State.SUCCEEDED) -> RunRecord:
        return record_run(self.store, self.clock, pipeline, stages, waited=waited,
                          outcome=outcome)


def record_run(store: Store, clock: FrozenClock, pipeline: str = "ci",
               stages: Sequence[tuple[str, float]] = (("checkout", 3),), *,
               waited: float = 1.0, outcome: State = State.SUCCEEDED) -> RunRecord:
    """A run as a flow records it: queued for ``waited`` seconds, then each stage in turn
    for its seconds, the last one ending in ``outcome``."""
    specs = [StageSpec(ref, (stages[i - 1][0],) if i else ()) for i, (ref, _) in
             enumerate(stages)]
    run = store.create_run(pipeline, specs, trigger="push", app="gateway", actor="ada")
    clock.advance(waited)
    for i, (ref, seconds) in enumerate(stages):
        store.transition_stage(run.id, ref, State.RUNNING, reason="Started")
        clock.advance(seconds)
        last = i == len(stages) - 1
        store.transition_stage(run.id, ref, outcome if last else State.SUCCEEDED,
                               reason="Done")
    return store.finish_run(run.id)


@contextmanager
def serving(store: Store, settings: Settings) -> Iterator[TestClient]:
    """The real application over ``store``, started (and stopped) as uvicorn would."""
    app = create_app(settings, store=store, start=prefect_refuses)
    with TestClient(app, base_url="http://localhost") as client:
        yield client


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store, clock = new_store(tmp_path)
    settings = settings_for(tmp_path)
    try:
        with serving(store, settings) as client:
            yield World(store, clock, client, settings)
    finally:
        store.close()


# -- runs and stages ----------------------------------------------------------------------


def test_two_runs_started_and_one_succeeded_are_counted_by_pipeline_and_state(world: World):
    world.run("ci", outcome=State.SUCCEEDED)
    world.run("ci", outcome=State.FAILED)
    world.run("release", outcome=State.SUCCEEDED)
    scrape = world.scrape()
    assert scrape.value("shipyard_runs_started_total", pipeline="ci") == 2
    assert scrape.value("shipyard_runs_finished_total", pipeline="ci", state="succeeded") == 1
    assert scrape.value("shipyard_runs_finished_total", pipeline="ci", state="failed") == 1
    assert scrape.value("shipyard_runs_finished_total", pipeline="release",
                        state="succeeded") == 1
    assert scrape.value("shipyard_runs_finished_total", pipeline="cd", state="failed") == 0


def test_a_stage_of_three_seconds_lands_in_the_five_second_bucket_of_its_kind(world: World):
    world.run(stages=[("checkout", 3), ("test:gateway", 40), ("build:gateway", 200)])
    world.run(stages=[("checkout", 1)])
    scrape = world.scrape()
    bucket = "shipyard_stage_duration_seconds_bucket"
    assert scrape.value(bucket, kind="checkout", le="1.0") == 1  # 1 s is at most 1
    assert scrape.value(bucket, kind="checkout", le="2.5") == 1
    assert scrape.value(bucket, kind="checkout", le="5.0") == 2
    assert scrape.value("shipyard_stage_duration_seconds_sum", kind="checkout") == 4
    assert scrape.value(bucket, kind="test", le="30.0") == 0
    assert scrape.value(bucket, kind="test", le="60.0") == 1
    assert scrape.value(bucket, kind="build", le="120.0") == 0
    assert scrape.value(bucket, kind="build", le="300.0") == 1
    assert scrape.value(bucket, kind="build", le="+Inf") == 1


def test_a_stage_a_restart_reused_or_that_never_started_is_no_duration(world: World):
    run = world.store.create_run("ci", [StageSpec("checkout"), StageSpec("test", ("checkout",))],
                                 trigger="restart")
    world.store.reuse_stage(run.id, "checkout", message="done by run 1", outputs={})
    world.store.cancel_run(run.id, reason="Cancelled", message="no")
    kinds = {labels["kind"] for labels in
             world.scrape().labels_of("shipyard_stage_duration_seconds_count")}
    assert kinds == set()


def test_the_hand_over_latency_is_the_wait_from_recording_to_the_first_stage(world: World):
    world.run("ci", waited=0.3)
    world.run("ci", waited=7)
    scrape = world.scrape()
    bucket = "shipyard_hand_over_latency_seconds_bucket"
    assert scrape.value(bucket, pipeline="ci", le="0.25") == 0
    assert scrape.value(bucket, pipeline="ci", le="0.5") == 1
    assert scrape.value(bucket, pipeline="ci", le="10.0") == 2
    assert scrape.value("shipyard_hand_over_latency_seconds_sum", pipeline="ci") == \
        pytest.approx(7.3)
    assert scrape.value("shipyard_hand_over_latency_seconds_count", pipeline="cd") == 0


def test_queue_depth_counts_the_runs_not_running_by_what_they_wait_for(world: World):
    stages = [StageSpec("checkout")]
    world.store.create_run("ci", stages, trigger="push")
    world.store.create_run("ci", stages, trigger="push")
    taken = world.store.create_run("ci", stages, trigger="push")
    world.store.record_hand_over(taken.id, "flow-run-1")
    judged = world.store.create_run("release", [StageSpec("judgment")], trigger="cli")
    world.store.transition_stage(judged.id, "judgment", State.RUNNING, reason="Started")
    world.store.transition_stage(judged.id, "judgment", State.WAITING, reason="Asked")
    world.run("ci")  # finished: in no queue
    scrape = world.scrape()
    depth = "shipyard_queue_depth"
    assert scrape.value(depth, pipeline="ci", waiting_for="prefect") == 2
    assert scrape.value(depth, pipeline="ci", waiting_for="worker") == 1
    assert scrape.value(depth, pipeline="ci", waiting_for="judgment") == 0
    assert scrape.value(depth, pipeline="release", waiting_for="judgment") == 1
    assert scrape.value(depth, pipeline="release", waiting_for="prefect") == 0


# -- deliveries and repairs -----------------------------------------------------------------


def test_webhook_deliveries_are_counted_by_outcome_and_reason(world: World):
    ledger = Ledger(world.store)
    for n in range(2):
        ledger.accept_delivery(delivery_id=f"d{n}", event="push", detail="branch 'main'",
                               pipeline="ci", stages=[StageSpec("checkout")], trigger="push",
                               repo_url="https://github.com/o/r.git", ref="main",
                               commit_sha=f"{n}" * 40)
    ledger.accept_delivery(delivery_id="d2", event="push", detail="branch 'main'",
                           pipeline="ci", stages=[StageSpec("checkout")], trigger="push",
                           repo_url="https://github.com/o/r.git", ref="main",
                           commit_sha="0" * 40, replay_window=timedelta(minutes=5),
                           duplicate_detail="duplicate push: o/r already started a run")
    ledger.record_delivery(delivery_id="d3", event="push", outcome="ignored",
                           detail="repository not allowed: o/x is not in SHIPYARD_REPOSITORIES")
    ledger.record_delivery(delivery_id="d4", event="push", outcome="ignored",
                           detail="branch 'wip' matches no pattern")
    ledger.record_delivery(delivery_id="d4", event="push", outcome="ignored",
                           detail="a redelivery records nothing")
    scrape = world.scrape()
    total = "shipyard_webhook_deliveries_total"
    assert scrape.value(total, outcome="accepted", reason="started_run") == 2
    assert scrape.value(total, outcome="ignored", reason="duplicate") == 1
    assert scrape.value(total, outcome="ignored", reason="not_allowed") == 1
    assert scrape.value(total, outcome="ignored", reason="filtered") == 1


def test_sweeper_repairs_and_drift_are_counted_from_the_audit_trail(world: World):
    ledger = Ledger(world.store)
    for action, subject in (("run.abandoned", "run"), ("run.abandoned", "run"),
                            ("ledger.repaired", "app"), ("ledger.drift", "app"),
                            ("run.cancelled", "run")):
        ledger.audit(actor="shipyard", action=action, subject_kind=subject, subject_id="x")
    scrape = world.scrape()
    assert scrape.value("shipyard_sweeper_repairs_total", action="run.abandoned") == 2
    assert scrape.value("shipyard_sweeper_repairs_total", action="ledger.repaired") == 1
    assert scrape.value("shipyard_ledger_drift_total") == 1
    assert len(scrape.labels_of("shipyard_sweeper_repairs_total")) == 2


# -- DORA -----------------------------------------------------------------------------------


def test_doras_keys_are_gauges_of_the_production_environment_per_window(world: World):
    ci = world.run("ci")
    ledger = Ledger(world.store)
    ledger.record_artifact(run_id=ci.id, stage_ref="push", app="gateway",
                           name="shipyard/gateway", digest=DIGEST)
    world.clock.advance((ci.created_at + timedelta(hours=1) - world.clock()).total_seconds())
    prod = world.settings.production_environment
    ledger.record_release(app="gateway", version="v2", environment=prod, kind="deploy",
                          digest=DIGEST, actor="ada", why="ship it")
    world.clock.advance(600)
    ledger.record_release(app="gateway", version="v1", environment=prod, kind="rollback",
                          digest=OLD_DIGEST, actor="ada", why="errors")
    scrape = world.scrape()
    week = {"environment": prod, "window_days": "7"}
    assert scrape.value("shipyard_dora_deployment_frequency_per_day", **week) == \
        pytest.approx(1 / 7)
    assert scrape.value("shipyard_dora_lead_time_seconds", **week, quantile="0.5") == 3600
    assert scrape.value("shipyard_dora_change_failure_ratio", **week) == 1.0
    assert scrape.value("shipyard_dora_recovery_time_seconds", **week) == 600
    assert scrape.value("shipyard_dora_rework_ratio", **week) == 0.5
    assert {labels["window_days"] for labels in
            scrape.labels_of("shipyard_dora_deployment_frequency_per_day")} == {"7", "30", "90"}


def test_a_dora_key_with_nothing_to_measure_is_absent_rather_than_zero(world: World):
    scrape = world.scrape()
    assert scrape.value("shipyard_dora_deployment_frequency_per_day",
                        environment=world.settings.production_environment,
                        window_days="30") == 0
    for absent in ("lead_time_seconds", "change_failure_ratio", "recovery_time_seconds",
                   "rework_ratio"):
        assert scrape.labels_of(f"shipyard_dora_{absent}") == []


# -- counting since the start, cheaply ----------------------------------------------------


def test_counters_count_from_the_ui_start_and_gauges_show_the_store_now(tmp_path: Path):
    store, clock = new_store(tmp_path)
    record_run(store, clock, "ci")
    store.create_run("ci", [StageSpec("checkout")], trigger="push")
    try:
        with serving(store, settings_for(tmp_path)) as client:
            record_run(store, clock, "ci")
            clock.advance(CACHE_SECONDS)
            scrape = parse(client.get("/metrics").text)
    finally:
        store.close()
    assert scrape.value("shipyard_runs_finished_total", pipeline="ci", state="succeeded") == 1
    assert scrape.value("shipyard_queue_depth", pipeline="ci", waiting_for="prefect") == 1
    started = scrape.value("shipyard_runs_started_created", pipeline="ci")
    assert started == pytest.approx(START.timestamp() + 4)  # the first run took 4 s


def test_counters_never_go_down_when_gc_deletes_the_runs_and_deliveries_counted(world: World):
    world.run("ci")
    Ledger(world.store).record_delivery(delivery_id="d1", event="push", outcome="ignored",
                                        detail="branch 'wip' matches no pattern")
    world.clock.advance(SETTLE.total_seconds())
    before = world.scrape()
    report = Retention(world.store).delete_expired(runs_before=world.clock(),
                                                   deliveries_before=world.clock())
    assert (report.runs, report.deliveries) == (1, 1)
    after = world.scrape()
    for sample, labels in (("shipyard_runs_finished_total",
                            {"pipeline": "ci", "state": "succeeded"}),
                           ("shipyard_webhook_deliveries_total",
                            {"outcome": "ignored", "reason": "filtered"}),
                           ("shipyard_stage_duration_seconds_count", {"kind": "checkout"})):
        assert before.value(sample, **labels) == after.value(sample, **labels) == 1


def test_a_delivery_written_late_with_a_time_before_the_last_scrape_is_still_counted(
        world: World):
    world.clock.advance(SETTLE.total_seconds() * 2)  # the ui has run a while
    world.scrape()
    # Another process took the delivery's time a minute ago and waited for the lock since.
    waited = FrozenClock(world.clock() - timedelta(seconds=60))
    late = Store(world.store.engine, clock=waited)
    Ledger(late).record_delivery(delivery_id="late", event="push", outcome="ignored",
                                 detail="branch 'wip' matches no pattern")
    assert world.scrape().value("shipyard_webhook_deliveries_total", outcome="ignored",
                                reason="filtered") == 1


def test_a_reading_costs_a_dozen_statements_and_a_scrape_within_the_cache_none(
        tmp_path: Path):
    store, clock = new_store(tmp_path)
    registry = metrics_registry(store, settings_for(tmp_path))
    for _ in range(20):
        record_run(store, clock, stages=[("checkout", 2), ("test:gateway", 5)])
    statements: list[str] = []

    def note(connection: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.startswith("SELECT"):  # a session's BEGIN asks nothing
            statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", note)
    try:
        generate_latest(registry)
        read = len(statements)
        clock.advance(CACHE_SECONDS / 2)
        generate_latest(registry)
        assert len(statements) == read
        clock.advance(SETTLE.total_seconds())
        generate_latest(registry)  # the settled events are added up once, then never read
    finally:
        store.close()
    assert read <= 12, statements
    assert len(statements) - read <= 15, statements[read:]


def test_metrics_need_no_sign_in_and_every_family_is_shipyards_with_help(world: World):
    answer = world.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert world.client.get("/api/runs").status_code == 401  # the rest still needs one
    for name, family in parse(answer.text).families.items():
        assert name.startswith("shipyard_"), name
        assert family.documentation, name
    assert b"# EOF" in world.client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text"}).content


def test_a_store_that_cannot_be_read_fails_the_scrape_and_says_nothing_of_why(world: World):
    with world.store.engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_events RENAME TO audit_events_gone"))
    world.clock.advance(CACHE_SECONDS)
    answer = world.client.get("/metrics")
    assert answer.status_code == 503
    assert "audit" not in answer.text and "sqlite" not in answer.text.lower()


# -- the dashboard --------------------------------------------------------------------------

PROMQL_WORDS = frozenset({
    "sum", "avg", "min", "max", "count", "rate", "irate", "increase", "histogram_quantile",
    "clamp_min", "clamp_max", "topk", "bottomk", "abs", "vector", "scalar", "and", "or",
    "unless", "bool", "offset", "time", "label_replace", "sort_desc", "max_over_time",
    "avg_over_time", "absent"})


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    every: list[dict[str, Any]] = []
    for panel in model["panels"]:
        every.append(panel)
        every.extend(panel.get("panels", []))  # a collapsed row's
    return every


def exprs(model: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(model) for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The series ``expr`` reads: what is left once strings, label matchers, ranges,
    grouping clauses, numbers and PromQL's own words are taken out; the apps' prefix
    variable is read as ``app``."""
    text = expr.replace("${prefix}", "app")
    text = re.sub(r'"[^"]*"', "", text)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    words = set(re.findall(r"(?<![\w.$])[A-Za-z_:][\w:]*", text))
    return words - PROMQL_WORDS


def series_of(scrape: Scrape) -> set[str]:
    """Every series name a family's type gives it, samples or none."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    return {f.name + suffix for f in scrape.families.values() for suffix in suffixes[f.type]}


def test_the_dashboard_is_a_grafana_model_on_a_prometheus_datasource_input():
    model = dashboard()
    assert 36 <= model["schemaVersion"] <= 41
    assert [(i["name"], i["type"], i["pluginId"]) for i in model["__inputs"]] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")]
    ids = [p["id"] for p in panels(model)]
    assert len(ids) == len(set(ids))
    for panel in panels(model):
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_every_shipyard_series_the_dashboard_queries_is_one_metrics_exports(world: World):
    exported = series_of(world.scrape())
    used = {name for expr in exprs(dashboard()) for name in metric_names(expr)}
    ours = {name for name in used if name.startswith("shipyard_")}
    assert ours <= exported, ours - exported
    families = {name.removesuffix("_total").removesuffix("_bucket") for name in ours}
    for family in ("shipyard_runs_started", "shipyard_runs_finished",
                   "shipyard_stage_duration_seconds", "shipyard_hand_over_latency_seconds",
                   "shipyard_webhook_deliveries", "shipyard_sweeper_repairs",
                   "shipyard_queue_depth", "shipyard_dora_deployment_frequency_per_day",
                   "shipyard_dora_lead_time_seconds", "shipyard_dora_change_failure_ratio",
                   "shipyard_dora_recovery_time_seconds"):
        assert family in families, f"no panel shows {family}"


def test_every_app_series_the_dashboard_queries_is_one_the_service_kit_exports():
    kit = ServiceMetrics("app", "v1")
    kit.observe_request("GET", "/x", 200, 0.01)
    exported = series_of(parse(kit.render().decode()))
    used = {name for expr in exprs(dashboard()) for name in metric_names(expr)}
    theirs = used - {name for name in used if name.startswith("shipyard_")}
    assert "app_http_requests_total" in theirs
    assert theirs <= exported, theirs - exported
    for expr in exprs(dashboard()):
        if "app_" in expr.replace("${prefix}", "app"):
            assert "track" in expr, expr  # every app panel tells canary from baseline
