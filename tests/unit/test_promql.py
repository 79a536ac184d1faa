"""The canary's PromQL, a range query's answer as a series, pods as discovery targets and
the stack's Prometheus configuration, as plain data."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from shipyard.domain.catalog import CanaryMetric, InvalidDescriptor, parse_descriptor
from shipyard.domain.metric_series import IntervalCounts, metric_value
from shipyard.domain.pod_targets import pod_targets, sanitize
from shipyard.domain.promql import (
    InvalidQuery,
    QueryScope,
    duration,
    graph_url,
    metric_query,
    render_query,
    series_from_matrix,
    step_times,
)
from shipyard.stack.prometheus import scrape_config

SCOPE = QueryScope(app="discovery", namespace="shipyard-prod", track="canary", step_seconds=2)


def test_each_kind_selects_one_track_of_one_app_without_the_operational_routes():
    error = metric_query(CanaryMetric("e", "error_rate"), "discovery", SCOPE)
    assert error == (
        '(sum(increase(discovery_http_requests_total{namespace="shipyard-prod",'
        'app="discovery",track="canary",route!~"/healthz|/metrics|/readyz|/version",'
        'status=~"5[0-9][0-9]"}[2s])) or vector(0)) / sum(increase('
        'discovery_http_requests_total{namespace="shipyard-prod",app="discovery",'
        'track="canary",route!~"/healthz|/metrics|/readyz|/version"}[2s]))')
    rate = metric_query(CanaryMetric("r", "rate"), "my-app", SCOPE, range_seconds=3)
    assert rate.startswith("sum(rate(my_app_http_requests_total{") and rate.endswith("[3s]))")
    latency = metric_query(CanaryMetric("l", "latency", quantile=0.95), "discovery", SCOPE)
    assert latency.startswith("histogram_quantile(0.95, sum by (le) (increase("
                              "discovery_http_request_duration_seconds_bucket{")


def test_a_latency_metric_needs_its_quantile_and_an_unknown_kind_is_refused():
    with pytest.raises(InvalidQuery, match="no quantile"):
        metric_query(CanaryMetric("l", "latency"), "app", SCOPE)
    with pytest.raises(InvalidQuery, match="unknown kind 'p99'"):
        metric_query(CanaryMetric("x", "p99"), "app", SCOPE)


def test_a_query_metric_fills_its_placeholders_and_names_an_unknown_one():
    metric = CanaryMetric("hits", "query", query='sum(rate(data_cache_requests_total{'
                          'track="{{ track }}",namespace="{{namespace}}",app="{{ app }}",'
                          'result="hit"}[{{ interval }}]))')
    assert metric_query(metric, "data", SCOPE) == (
        'sum(rate(data_cache_requests_total{track="canary",namespace="shipyard-prod",'
        'app="discovery",result="hit"}[2s]))')
    with pytest.raises(InvalidQuery, match=r"metric hits: unknown placeholder \{\{ trak \}\}"):
        render_query('up{track="{{ trak }}"}', SCOPE, metric="hits")
    with pytest.raises(InvalidQuery, match="needs a `query`"):
        metric_query(CanaryMetric("q", "query"), "data", SCOPE)


def test_label_values_are_quoted_for_promql():
    scope = QueryScope(app='a"b', namespace="n", track="t", step_seconds=1)
    assert 'app="a\\"b"' in metric_query(CanaryMetric("r", "rate"), "p", scope)


def test_durations_are_whole_seconds_or_milliseconds():
    assert (duration(5), duration(1.5), duration(0.25)) == ("5s", "1500ms", "250ms")
    with pytest.raises(ValueError, match="positive"):
        duration(0)


def test_step_times_lay_points_out_as_prometheus_does():
    assert step_times(100.0, 108.0, 2.0) == [100.0, 102.0, 104.0, 106.0, 108.0]
    assert step_times(100.0, 107.9, 2.0) == [100.0, 102.0, 104.0, 106.0]
    with pytest.raises(ValueError, match="step"):
        step_times(0, 1, 0)


def test_a_matrix_becomes_one_value_per_time_with_gaps_as_none():
    result = [{"metric": {}, "values": [[102.0, "0.5"], [106.0, "NaN"], [108.0, "+Inf"],
                                        [110.0, "0.25"]]}]
    assert series_from_matrix(result, [102.0, 104.0, 106.0, 108.0, 110.0]) == \
        [0.5, None, None, None, 0.25]
    assert series_from_matrix([], [1.0, 2.0]) == [None, None]


def test_a_query_that_returns_several_series_is_refused_with_the_fix():
    result = [{"metric": {"pod": "a"}, "values": []}, {"metric": {"pod": "b"}, "values": []}]
    with pytest.raises(InvalidQuery, match=r"hits: the query returned 2 series .*sum\(\)"):
        series_from_matrix(result, [1.0], metric="hits")


def test_a_graph_link_covers_the_window():
    link = graph_url("http://127.0.0.1:9090/", "up", start=1_700_000_000,
                     end=1_700_000_016, step=2, page="/classic/graph")
    parts = urlsplit(link)
    assert parts.path == "/classic/graph"
    query = parse_qs(parts.query)
    assert query["g0.expr"] == ["up"] and query["g0.range_input"] == ["16s"]
    assert query["g0.end_input"] == ["2023-11-14 22:13:36"] and query["g0.step_input"] == ["2"]


def test_the_pods_cannot_answer_a_query_metric():
    counts = IntervalCounts(0, 2, 1, 10, 1, ((0.1, 5), (float("inf"), 10)))
    assert metric_value(CanaryMetric("q", "query", query="up"), counts) is None
    assert metric_value(CanaryMetric("e", "error_rate"), counts) == 0.1


def _descriptor(metric: dict[str, object]) -> dict[str, object]:
    return {"name": "demo", "port": 8080,
            "health": {"liveness": "/healthz", "readiness": "/readyz"},
            "canary": {"metrics": [metric]}}


def test_app_yaml_takes_a_query_metric_and_refuses_a_query_on_another_kind():
    query = 'sum(up{track="{{ track }}"})'
    descriptor = parse_descriptor(_descriptor({"name": "hits", "kind": "query",
                                               "query": query}), source="app.yaml")
    assert descriptor.canary_metrics[0].query == query
    with pytest.raises(InvalidDescriptor, match=r"canary.metrics\[0\].query: a query metric"):
        parse_descriptor(_descriptor({"name": "hits", "kind": "query"}), source="app.yaml")
    with pytest.raises(InvalidDescriptor, match=r"only a metric of kind query has one"):
        parse_descriptor(_descriptor({"name": "r", "kind": "rate", "query": "up"}),
                         source="app.yaml")


POD = {
    "metadata": {"name": "discovery-v001-abc", "namespace": "shipyard-prod", "uid": "u1",
                 "labels": {"app.kubernetes.io/name": "discovery",
                            "app.kubernetes.io/managed-by": "shipyard",
                            "shipyard.dev/track": "stable"},
                 "annotations": {"prometheus.io/path": "/metrics"},
                 "ownerReferences": [{"kind": "ReplicaSet", "name": "discovery-v001",
                                      "controller": True}]},
    "spec": {"nodeName": "node-1", "containers": [
        {"name": "app", "image": "img", "ports": [{"name": "http", "containerPort": 8761}]},
        {"name": "sidecar", "image": "side"}]},
    "status": {"podIP": "10.88.0.7", "hostIP": "10.200.0.1", "phase": "Running",
               "conditions": [{"type": "Ready", "status": "True"}]},
}


def test_a_pod_becomes_one_target_per_port_with_kubernetes_discoverys_meta_labels():
    (group,) = pod_targets([POD, {**POD, "status": {"phase": "Pending"}}])
    assert group["targets"] == ["10.88.0.7:8761"]
    labels = group["labels"]
    assert labels["__meta_kubernetes_namespace"] == "shipyard-prod"
    assert labels["__meta_kubernetes_pod_name"] == "discovery-v001-abc"
    assert labels["__meta_kubernetes_pod_label_app_kubernetes_io_name"] == "discovery"
    assert labels["__meta_kubernetes_pod_labelpresent_shipyard_dev_track"] == "true"
    assert labels["__meta_kubernetes_pod_label_shipyard_dev_track"] == "stable"
    assert labels["__meta_kubernetes_pod_annotation_prometheus_io_path"] == "/metrics"
    assert labels["__meta_kubernetes_pod_container_port_name"] == "http"
    assert labels["__meta_kubernetes_pod_ready"] == "true"
    assert labels["__meta_kubernetes_pod_controller_kind"] == "ReplicaSet"
    assert sanitize("app.kubernetes.io/name") == "app_kubernetes_io_name"


def test_the_stack_config_relabels_pods_to_namespace_pod_app_and_track():
    config = scrape_config(scrape_seconds=1, discovery_url="http://127.0.0.1:9091/targets")
    pods, shipyard = config["scrape_configs"]
    assert pods["http_sd_configs"] == [{"url": "http://127.0.0.1:9091/targets",
                                        "refresh_interval": "2s"}]
    targets = {r.get("target_label") for r in pods["relabel_configs"]}
    assert {"namespace", "pod", "app", "track"} <= targets
    assert config["global"]["scrape_interval"] == "1000ms"
    assert shipyard["static_configs"] == [{"targets": ["127.0.0.1:8000"]}]
    # With Kubernetes discovery (a Prometheus built with it), the same relabelling.
    kube = scrape_config(scrape_seconds=1, kubeconfig=Path("/k"))["scrape_configs"][0]
    assert kube["kubernetes_sd_configs"] == [{"role": "pod", "kubeconfig_file": "/k"}]
    assert kube["relabel_configs"] == pods["relabel_configs"]
    assert [j["job_name"] for j in scrape_config(scrape_seconds=1)["scrape_configs"]] == \
        ["shipyard"]
