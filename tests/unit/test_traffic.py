"""Load samples judged: summaries, version shares and the time a traffic flip took."""

from __future__ import annotations

import pytest

from shipyard.domain.traffic import Sample, share_of, summarize, switch_time


def answered(started: float, version: str, *, status: int = 200,
             latency: float = 0.01) -> Sample:
    return Sample(started, latency, status, version)


def refused(started: float) -> Sample:
    return Sample(started, 0.001, 0, "")


def flip(old: int, new: int, *, every: float = 0.1, version_old: str = "v1",
         version_new: str = "v2") -> list[Sample]:
    """``old`` requests to the old version, then ``new`` to the new, ``every`` s apart."""
    return ([answered(i * every, version_old) for i in range(old)]
            + [answered((old + i) * every, version_new) for i in range(new)])


# -- summarize -------------------------------------------------------------------------------

def test_failures_are_connection_errors_and_5xx_but_not_4xx():
    samples = [answered(0, "v1"), answered(1, "v1", status=404), answered(2, "", status=503),
               refused(3)]
    summary = summarize(samples)
    assert (summary.requests, summary.failures, summary.failure_ratio) == (4, 2, 0.5)


def test_latency_quantiles_are_nearest_rank_over_answered_requests():
    samples = [answered(i, "v1", latency=(i + 1) / 100) for i in range(100)]
    samples.append(refused(100))  # fails fast; must not pull the quantiles down
    summary = summarize(samples)
    assert (summary.p50, summary.p95, summary.p99) == (0.50, 0.95, 0.99)


def test_versions_count_answered_requests_by_the_version_they_named():
    samples = [answered(0, "v1"), answered(1, "v2"), answered(2, "v2"),
               answered(3, "", status=500), refused(4)]
    assert summarize(samples).versions == {"v1": 1, "v2": 2, "": 1}


def test_a_window_takes_requests_sent_from_its_start_up_to_but_not_at_its_end():
    samples = [answered(t, "v1") for t in (0.5, 1.0, 1.5, 2.0, 2.5)]
    assert summarize(samples, start=1.0, end=2.0).requests == 2
    assert summarize(samples, start=2.0).requests == 2
    assert summarize(samples, end=1.0).requests == 1


def test_a_slow_answer_belongs_to_the_window_it_was_sent_in():
    late = Sample(started=0.9, latency=5.0, status=200, version="v1")
    assert summarize([late], start=0.0, end=1.0).requests == 1
    assert summarize([late], start=1.0).requests == 0


def test_an_empty_window_has_no_failures_and_no_latencies():
    summary = summarize([answered(5, "v1")], start=0, end=1)
    assert (summary.requests, summary.failure_ratio, summary.p99, summary.versions) == (
        0, 0.0, None, {})


# -- share_of ----------------------------------------------------------------------------------

def test_the_share_of_a_version_is_over_answered_requests_only():
    samples = [answered(0, "v2"), answered(1, "v1"), answered(2, "v2"), refused(3)]
    assert share_of(samples, "v2", start=0, end=10) == pytest.approx(2 / 3)


def test_the_share_counts_only_the_window():
    samples = flip(10, 10, every=1.0)
    assert share_of(samples, "v2", start=10, end=20) == 1.0
    assert share_of(samples, "v2", start=5, end=15) == 0.5


def test_a_window_without_answers_has_no_share():
    assert share_of([refused(1)], "v2", start=0, end=2) == 0.0


# -- switch_time -------------------------------------------------------------------------------

def test_a_clean_flip_switches_at_the_first_request_the_new_version_answered():
    samples = flip(30, 40, every=0.1)  # first v2 request sent at 3.0 s
    assert switch_time(samples, "v2", after=2.0) == pytest.approx(1.0)


def test_a_straggler_of_the_old_version_moves_the_switch_past_it():
    samples = flip(30, 60, every=0.1)
    samples[40] = answered(4.0, "v1")  # one old answer among the new ones
    assert switch_time(samples, "v2", after=2.0) == pytest.approx(2.1)


def test_a_lower_threshold_tolerates_stragglers_within_a_window():
    samples = flip(30, 60, every=0.1)
    samples[40] = answered(4.0, "v1")
    # 19 of 20 = 0.95: every window holds from the first v2 answer on.
    assert switch_time(samples, "v2", after=2.0, threshold=0.95) == pytest.approx(1.0)


def test_the_switch_point_is_an_answer_of_the_new_version_even_when_a_window_tolerates_old():
    samples = [answered(0.0, "v1"), *[answered(0.1 * (i + 1), "v2") for i in range(20)]]
    # The window from the v1 answer holds at 0.95, but traffic is on v2 from the next one.
    assert switch_time(samples, "v2", after=0.0, threshold=0.95) == pytest.approx(0.1)


def test_failed_requests_during_the_switch_are_not_counted_as_either_version():
    samples = flip(30, 40, every=0.1)
    samples[31:34] = [refused(3.1), refused(3.2), refused(3.3)]
    assert switch_time(samples, "v2", after=3.0) == pytest.approx(0.0)


def test_traffic_already_on_the_version_switches_at_the_first_request_after():
    samples = flip(0, 40, every=0.1)
    assert switch_time(samples, "v2", after=1.05) == pytest.approx(0.05)


def test_requests_sent_before_after_are_ignored():
    samples = flip(20, 30, every=0.1)
    samples[5] = answered(0.5, "v1")  # an old answer long before the event
    assert switch_time(samples, "v2", after=2.0) == pytest.approx(0.0)


def test_samples_are_taken_in_the_order_they_were_sent_not_answered():
    samples = flip(30, 40, every=0.1)
    assert switch_time(list(reversed(samples)), "v2", after=2.0) == pytest.approx(1.0)


def test_traffic_that_never_settles_has_no_switch_time():
    samples = [answered(0.1 * i, "v2" if i % 10 else "v1") for i in range(200)]
    assert switch_time(samples, "v2", after=0.0) is None


def test_traffic_that_leaves_the_version_again_at_the_end_has_no_switch_time():
    samples = flip(30, 40, every=0.1) + [answered(7.0 + 0.1 * i, "v1") for i in range(5)]
    assert switch_time(samples, "v2", after=2.0) is None


def test_fewer_answers_than_a_window_cannot_show_a_switch():
    assert switch_time(flip(0, 19), "v2", after=0.0) is None
    assert switch_time(flip(0, 20), "v2", after=0.0) == 0.0


def test_a_window_of_one_switches_after_the_last_old_answer():
    samples = flip(5, 5, every=1.0)
    samples[7] = answered(7.0, "v1")
    assert switch_time(samples, "v2", after=0.0, window=1, threshold=1.0) == 8.0


@pytest.mark.parametrize(("window", "threshold"), [(0, 0.99), (20, 0.0), (20, 1.5)])
def test_a_meaningless_window_or_threshold_is_refused(window, threshold):
    with pytest.raises(ValueError, match=r"window|threshold"):
        switch_time(flip(0, 30), "v2", after=0, window=window, threshold=threshold)
