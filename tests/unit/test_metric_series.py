"""Canary metric series from successive scrapes, checked against hand-computed values."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
from servicekit.metrics import ServiceMetrics
from servicekit.routes import OPERATIONAL_PATHS

from shipyard.domain.catalog import AppDescriptor, CanaryMetric
from shipyard.domain.metric_series import (
    OPERATIONAL_ROUTES,
    IntervalCounts,
    InvalidScrape,
    PodScrape,
    ScrapeRound,
    combine,
    histogram_quantile,
    intervals,
    series_for,
    series_for_all,
)

ERROR_RATE = CanaryMetric("error-rate", "error_rate")
RATE = CanaryMetric("request-rate", "rate", direction="decrease")
P50 = CanaryMetric("latency-p50", "latency", quantile=0.5)
P90 = CanaryMetric("latency-p90", "latency", quantile=0.9)
INF = math.inf


def requests(counts: Mapping[tuple[str, int], float], *, created: float | None = None) -> str:
    """``shop_http_requests_total`` lines for {(route, status): count}."""
    lines = ["# TYPE shop_http_requests_total counter"]
    for (route, status), value in counts.items():
        labels = f'method="GET",route="{route}",status="{status}",version="1.0"'
        lines.append(f"shop_http_requests_total{{{labels}}} {value}")
        if created is not None:
            lines.append(f"shop_http_requests_created{{{labels}}} {created}")
    return "\n".join(lines) + "\n"


def durations(route: str, cumulative: Mapping[float, float]) -> str:
    """``shop_http_request_duration_seconds`` lines for one route's cumulative buckets."""
    lines = ["# TYPE shop_http_request_duration_seconds histogram"]
    for bound, count in cumulative.items():
        le = "+Inf" if bound == INF else repr(bound)
        lines.append(f'shop_http_request_duration_seconds_bucket{{le="{le}",method="GET",'
                     f'route="{route}",version="1.0"}} {count}')
    total = cumulative[INF]
    lines.append(f'shop_http_request_duration_seconds_count{{method="GET",route="{route}",'
                 f'version="1.0"}} {total}')
    return "\n".join(lines) + "\n"


def round_at(at: float, **pods: str) -> ScrapeRound:
    return ScrapeRound(at, tuple(PodScrape(pod, at, text) for pod, text in pods.items()))


# -- counters ---------------------------------------------------------------------------------

def test_the_error_rate_is_5xx_gained_over_all_requests_gained_summed_over_pods():
    rounds = [
        round_at(0, a=requests({("/orders", 200): 100}), b=requests({("/orders", 200): 50})),
        round_at(10, a=requests({("/orders", 200): 190, ("/orders", 500): 10}),
                 b=requests({("/orders", 200): 100})),
    ]
    # gained: a 90 + 10 (a new 500 series counts from zero), b 50: 10 of 150.
    assert series_for(ERROR_RATE, "shop", rounds) == [pytest.approx(10 / 150)]


def test_the_rate_is_requests_gained_per_second_of_the_interval():
    rounds = [round_at(0, a=requests({("/orders", 200): 100})),
              round_at(10, a=requests({("/orders", 200): 150, ("/orders", 404): 10})),
              round_at(15, a=requests({("/orders", 200): 150, ("/orders", 404): 10}))]
    assert series_for(RATE, "shop", rounds) == [pytest.approx(6.0), 0.0]


def test_probes_scrapes_and_version_requests_are_left_out():
    before = {("/orders", 200): 10, ("/healthz", 200): 100, ("/readyz", 503): 5,
              ("/metrics", 200): 10, ("/version", 200): 3}
    after = {("/orders", 200): 20, ("/healthz", 200): 200, ("/readyz", 503): 50,
             ("/metrics", 200): 20, ("/version", 200): 300}
    rounds = [round_at(0, a=requests(before)), round_at(10, a=requests(after))]
    assert series_for(ERROR_RATE, "shop", rounds) == [0.0]
    assert series_for(RATE, "shop", rounds) == [1.0]


def test_unmatched_routes_are_real_requests():
    rounds = [round_at(0, a=requests({})),
              round_at(1, a=requests({("unmatched", 404): 4, ("/orders", 502): 1}))]
    assert series_for(ERROR_RATE, "shop", rounds) == [pytest.approx(0.2)]


def test_the_operational_routes_are_servicekits():
    assert frozenset(OPERATIONAL_PATHS) == OPERATIONAL_ROUTES


def test_a_counter_that_went_down_was_reset_and_its_new_value_is_the_gain():
    rounds = [
        round_at(0, a=requests({("/orders", 200): 1000, ("/orders", 500): 10})),
        round_at(10, a=requests({("/orders", 200): 1090, ("/orders", 500): 10})),
        # restarted: 30 requests since, 3 of them 500s
        round_at(20, a=requests({("/orders", 200): 27, ("/orders", 500): 3})),
        round_at(30, a=requests({("/orders", 200): 117, ("/orders", 500): 3})),
    ]
    assert series_for(RATE, "shop", rounds) == [9.0, 3.0, 9.0]
    assert series_for(ERROR_RATE, "shop", rounds) == [0.0, pytest.approx(0.1), 0.0]


def test_a_series_that_vanished_means_the_pod_was_reset():
    rounds = [
        round_at(0, a=requests({("/orders", 200): 10, ("/orders", 500): 50})),
        # restarted, and no 500 since: that series is gone; /orders rose past its old value
        round_at(10, a=requests({("/orders", 200): 40})),
    ]
    assert series_for(RATE, "shop", rounds) == [4.0]
    assert series_for(ERROR_RATE, "shop", rounds) == [0.0]


def test_a_new_created_timestamp_means_the_pod_was_reset_even_if_counts_rose():
    rounds = [round_at(0, a=requests({("/orders", 200): 10}, created=1000.0)),
              round_at(10, a=requests({("/orders", 200): 25}, created=1007.0))]
    assert series_for(RATE, "shop", rounds) == [2.5]


def test_a_pod_first_seen_after_the_first_round_counts_from_zero():
    rounds = [round_at(0, a=requests({("/orders", 200): 100})),
              round_at(10, a=requests({("/orders", 200): 150}),
                       b=requests({("/orders", 200): 20, ("/orders", 500): 5}))]
    assert series_for(RATE, "shop", rounds) == [7.5]
    assert series_for(ERROR_RATE, "shop", rounds) == [pytest.approx(5 / 75)]


def test_what_pods_counted_before_the_first_round_belongs_to_no_interval():
    rounds = [round_at(0, a=requests({("/orders", 500): 1000})),
              round_at(10, a=requests({("/orders", 500): 1000, ("/orders", 200): 10}))]
    assert series_for(ERROR_RATE, "shop", rounds) == [0.0]


def test_a_pod_missing_from_a_round_is_counted_when_it_comes_back():
    rounds = [round_at(0, a=requests({("/orders", 200): 0}), b=requests({("/orders", 200): 0})),
              round_at(10, a=requests({("/orders", 200): 100})),  # b's scrape failed
              round_at(20, a=requests({("/orders", 200): 200}),
                       b=requests({("/orders", 200): 200}))]
    counts = intervals("shop", rounds)
    assert [(c.pods, c.requests) for c in counts] == [(1, 100), (2, 300)]
    assert combine(counts).requests == 400  # nothing lost over the whole analysis


def test_an_interval_no_pod_contributed_to_has_no_values():
    rounds = [round_at(0, a=requests({("/orders", 200): 10})), round_at(10),
              round_at(20, a=requests({("/orders", 200): 30}))]
    assert series_for(RATE, "shop", rounds) == [None, 2.0]
    assert series_for(ERROR_RATE, "shop", rounds) == [None, 0.0]


def test_an_interval_without_requests_has_no_error_rate_and_no_latency():
    text = requests({("/orders", 200): 5}) + durations("/orders", {0.1: 5, INF: 5})
    rounds = [round_at(0, a=text), round_at(10, a=text)]
    assert series_for(ERROR_RATE, "shop", rounds) == [None]
    assert series_for(P50, "shop", rounds) == [None]
    assert series_for(RATE, "shop", rounds) == [0.0]


def test_one_round_makes_no_interval():
    assert series_for(RATE, "shop", [round_at(0, a=requests({("/orders", 200): 5}))]) == []


def test_a_scrape_that_is_not_prometheus_text_is_refused_naming_the_pod():
    rounds = [round_at(0, a="<html>502 Bad Gateway</html>")]
    with pytest.raises(InvalidScrape, match="pod a"):
        intervals("shop", rounds)


def test_other_apps_series_are_not_read():
    other = requests({("/orders", 500): 99}).replace("shop_", "other_")
    rounds = [round_at(0, a=requests({("/orders", 200): 0})),
              round_at(10, a=other + requests({("/orders", 200): 10}))]
    assert series_for(ERROR_RATE, "shop", rounds) == [0.0]


# -- histograms -------------------------------------------------------------------------------

def test_latency_is_interpolated_within_the_bucket_from_bucket_gains():
    before = durations("/orders", {0.05: 5, 0.1: 5, 0.25: 10, INF: 10})
    # +20 below 50 ms, +40 in (50, 100] ms, +30 in (100, 250] ms, +10 above: 100 in all.
    after = durations("/orders", {0.05: 25, 0.1: 65, 0.25: 100, INF: 110})
    rounds = [round_at(0, a=before), round_at(10, a=after)]
    # p50: rank 50 of 100 in (0.05, 0.1], 30 of its 40: 0.05 + 0.05 * 30/40 = 0.0875.
    # p90: rank 90 ends (0.1, 0.25]: 0.1 + 0.15 * 30/30 = 0.25.
    assert series_for(P50, "shop", rounds) == [pytest.approx(0.0875)]
    assert series_for(P90, "shop", rounds) == [pytest.approx(0.25)]


def test_latency_buckets_are_summed_over_pods_and_routes_but_not_probes():
    rounds = [
        round_at(0, a=durations("/orders", {0.1: 0, 1.0: 0, INF: 0}),
                 b=durations("/items/{id}", {0.1: 0, 1.0: 0, INF: 0})),
        round_at(10, a=durations("/orders", {0.1: 10, 1.0: 10, INF: 10})
                 + durations("/healthz", {0.1: 1000, 1.0: 1000, INF: 1000}),
                 b=durations("/items/{id}", {0.1: 0, 1.0: 10, INF: 10})),
    ]
    # 10 in [0, 0.1] and 10 in (0.1, 1]; rank 15 is half-way through the second bucket.
    p75 = CanaryMetric("latency-p75", "latency", quantile=0.75)
    assert series_for(p75, "shop", rounds) == [pytest.approx(0.55)]


def test_a_reset_histogram_counts_its_new_buckets():
    rounds = [round_at(0, a=durations("/orders", {0.1: 500, 1.0: 1000, INF: 1000})),
              round_at(10, a=durations("/orders", {0.1: 0, 1.0: 4, INF: 4}))]
    # all 4 in (0.1, 1]: p50 at rank 2 = 0.1 + 0.9 * 2/4
    assert series_for(P50, "shop", rounds) == [pytest.approx(0.55)]


@pytest.mark.parametrize(
    ("quantile", "buckets", "expected"),
    [
        (0.1, [(0.05, 20), (0.1, 60), (0.25, 90), (INF, 100)], 0.025),  # first bucket from 0
        (0.95, [(0.05, 20), (0.1, 60), (0.25, 90), (INF, 100)], 0.25),  # +Inf: highest bound
        (0.5, [(INF, 100), (0.1, 60), (0.05, 20)], 0.0875),  # any order
        # a count lower than the bucket below it is raised to it: 0.1 + 0.15 * (50 - 40) / 40
        (0.5, [(0.05, 40), (0.1, 30), (0.25, 80), (INF, 100)], 0.1375),
        (0.5, [(-1.0, 80), (0.0, 90), (INF, 100)], -1.0),  # a first bound <= 0 is returned
        (0.5, [(0.1, 0), (INF, 0)], None),  # no observations
        (0.5, [(0.1, 10), (1.0, 20)], None),  # no +Inf bucket
        (0.5, [(INF, 20)], None),  # fewer than two buckets
        (0.5, [], None),
        (-0.5, [(0.1, 10), (INF, 10)], -INF),
        (1.5, [(0.1, 10), (INF, 10)], INF),
    ],
)
def test_histogram_quantile_follows_prometheus(quantile, buckets, expected):
    result = histogram_quantile(quantile, buckets)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


# -- the whole descriptor, and servicekit's own exposition ------------------------------------

def test_every_canary_metric_of_an_app_gets_a_series_by_its_name():
    shop = AppDescriptor("shop", 8080, "/healthz", "/readyz", (), metrics_prefix="shop",
                         canary_metrics=(ERROR_RATE, P50, RATE))
    text0 = requests({("/orders", 200): 0}) + durations("/orders", {0.1: 0, 1.0: 0, INF: 0})
    text1 = (requests({("/orders", 200): 18, ("/orders", 500): 2})
             + durations("/orders", {0.1: 10, 1.0: 20, INF: 20}))
    series = series_for_all(shop, [round_at(0, a=text0), round_at(4, a=text1)])
    assert series == {"error-rate": [pytest.approx(0.1)], "latency-p50": [pytest.approx(0.1)],
                      "request-rate": [5.0]}


def test_servicekits_exposition_reads_as_it_is_served():
    metrics = ServiceMetrics("shop", "2.0")
    metrics.observe_request("GET", "/healthz", 200, 0.001)
    first = metrics.render().decode()
    for seconds in (0.02, 0.03, 0.04, 0.2):
        metrics.observe_request("POST", "/orders", 201, seconds)
    metrics.observe_request("POST", "/orders", 503, 0.3)
    metrics.observe_request("GET", "/healthz", 200, 0.001)
    rounds = [round_at(0, a=first), round_at(5, a=metrics.render().decode())]
    (counts,) = intervals("shop", rounds)
    assert (counts.requests, counts.server_errors) == (5, 1)
    assert dict(counts.buckets)[0.025] == 1 and dict(counts.buckets)[INF] == 5
    assert series_for(RATE, "shop", rounds) == [1.0]


def test_combined_intervals_add_up():
    parts = [IntervalCounts(0, 10, 2, 100, 1, ((0.1, 50), (INF, 100))),
             IntervalCounts(10, 20, 3, 50, 4, ((0.1, 10), (INF, 50)))]
    whole = combine(parts)
    assert (whole.start, whole.end, whole.pods, whole.requests, whole.server_errors) == (
        0, 20, 3, 150, 5)
    assert whole.buckets == ((0.1, 60), (INF, 150))
