"""A steady-state window is the requests sent within it: what ``http_steady_state``
measures of its load, as plain samples, and what it reports when there was nothing to
measure."""

from __future__ import annotations

import pytest

from shipyard.domain.chaos_experiments import measurement_of
from shipyard.domain.traffic import Sample, summarize

WINDOW = 4.0


def window(samples: list[Sample], *, timeout: float = 2.0) -> dict:
    """The probe's measurement of ``samples`` over a window of 4 s at 10 requests/s."""
    return measurement_of(summarize(samples, start=0.0, end=WINDOW), seconds=WINDOW,
                          rate_per_second=10, timeout_seconds=timeout,
                          url="http://10.96.0.7:80", paths=["/work"])


def test_a_request_sent_after_the_window_is_not_counted_however_it_ended():
    inside = [Sample(i * 0.1, 0.01, 200, "v1") for i in range(40)]
    straggler = Sample(WINDOW + 0.05, 0.01, 500, "v1")
    measured = window([*inside, straggler])
    assert measured["requests"] == 40 and measured["failures"] == 0


def test_a_slow_answer_to_a_request_sent_inside_the_window_counts():
    samples = [Sample(i * 0.1, 0.01, 200, "v1") for i in range(39)]
    samples.append(Sample(3.95, 1.9, 200, "v1"))  # answered after the window closed
    assert window(samples)["latency_p99"] == 1.9


def test_the_window_reports_counts_ratios_quantiles_and_what_was_asked_for():
    samples = [Sample(i * 0.1, 0.02, 200, "v1") for i in range(38)]
    samples += [Sample(3.8, 0.001, 0), Sample(3.9, 0.05, 503)]
    assert window(samples) == {
        "url": "http://10.96.0.7:80", "paths": ["/work"], "seconds": WINDOW,
        "rate_per_second": 10, "expected_requests": 40.0, "requests": 40, "failures": 2,
        "answered": 39, "failure_ratio": 0.05, "availability": 0.95,
        "latency_p50": 0.02, "latency_p95": 0.02, "latency_p99": 0.05}


def test_a_window_without_a_request_counts_as_all_failed():
    measured = window([])
    assert measured["requests"] == 0
    assert (measured["failure_ratio"], measured["availability"]) == (1.0, 0.0)


def test_a_window_without_an_answer_has_the_timeout_as_its_latencies():
    measured = window([Sample(i * 0.1, 0.001, 0) for i in range(40)], timeout=2.0)
    assert measured["failure_ratio"] == 1.0 and measured["answered"] == 0
    assert [measured[f"latency_p{q}"] for q in (50, 95, 99)] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("samples", [[], [Sample(0.0, 0.001, 0)]])
def test_every_value_of_a_window_is_a_finite_number_for_chaos_toolkit_to_compare(samples):
    measured = window(samples)
    numbers = {k: v for k, v in measured.items() if k not in ("url", "paths")}
    assert all(isinstance(v, int | float) and v == v for v in numbers.values())
