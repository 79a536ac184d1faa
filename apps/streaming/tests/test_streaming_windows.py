"""Window assignment, the watermark and the late rule, with explicit times (ms)."""

from streaming.windows import (
    PartitionProgress,
    WindowChanges,
    is_final,
    is_late,
    next_watermark,
    window_start,
)

MINUTE = 60_000
T0 = 1_700_000_040_000  # 22:14:00 UTC, a minute boundary
LATENESS = 30_000


def test_an_event_belongs_to_the_minute_that_holds_it() -> None:
    assert window_start(T0) == T0
    assert window_start(T0 + 59_999) == T0
    assert window_start(T0 + MINUTE) == T0 + MINUTE


def test_windows_before_1970_are_floored_too() -> None:
    assert window_start(-1) == -MINUTE


def test_no_window_is_final_before_any_watermark() -> None:
    assert not is_final(T0, None)
    assert not is_late(T0, None)


def test_a_window_is_final_once_the_watermark_reaches_its_end() -> None:
    assert not is_final(T0, T0 + MINUTE - 1)
    assert is_final(T0, T0 + MINUTE)


def test_an_event_is_late_only_if_its_window_is_final() -> None:
    watermark = T0 + MINUTE + 15_000
    assert is_late(T0 + 59_000, watermark)
    assert not is_late(T0 + MINUTE, watermark)


def caught_up(max_event: int | None) -> PartitionProgress:
    return PartitionProgress(max_event, caught_up=True)


def behind(max_event: int | None) -> PartitionProgress:
    return PartitionProgress(max_event, caught_up=False)


def test_the_watermark_is_the_highest_event_time_less_the_lateness() -> None:
    progress = {0: caught_up(T0 + 10_000), 1: caught_up(T0 + 90_000)}
    assert next_watermark(None, progress, LATENESS) == T0 + 60_000


def test_the_watermark_never_goes_back() -> None:
    assert next_watermark(T0, {0: caught_up(T0 - 5 * MINUTE)}, LATENESS) == T0


def test_a_partition_with_records_left_holds_the_watermark_at_its_progress() -> None:
    progress = {0: caught_up(T0 + 10 * MINUTE), 1: behind(T0 + MINUTE)}
    assert next_watermark(None, progress, LATENESS) == T0 + MINUTE - LATENESS


def test_a_partition_with_records_left_and_no_event_yet_stops_the_watermark() -> None:
    progress = {0: caught_up(T0 + 10 * MINUTE), 1: behind(None)}
    assert next_watermark(T0, progress, LATENESS) == T0


def test_an_idle_partition_holds_nothing_back() -> None:
    progress = {0: caught_up(T0 + 2 * MINUTE), 1: caught_up(None)}
    assert next_watermark(None, progress, LATENESS) == T0 + 2 * MINUTE - LATENESS


def test_no_event_anywhere_means_no_watermark() -> None:
    assert next_watermark(None, {0: caught_up(None)}, LATENESS) is None


def test_out_of_order_events_within_the_lateness_are_counted() -> None:
    changes = WindowChanges(watermark_ms=T0 + MINUTE - 1)
    assert changes.observe("c1", T0 + 5_000) == "counted"
    assert changes.observe("c1", T0 + 1_000) == "counted"
    assert changes.counts == {("c1", T0): 2}
    assert changes.late_total == 0


def test_a_late_event_counts_in_the_late_counter_not_in_the_final_window() -> None:
    changes = WindowChanges(watermark_ms=T0 + MINUTE + 30_000)
    assert changes.observe("c1", T0 + 50_000) == "late"
    assert changes.observe("c1", T0 + MINUTE + 1_000) == "counted"
    assert changes.counts == {("c1", T0 + MINUTE): 1}
    assert changes.late == {("c1", T0): 1}
    assert changes.late_total == 1


def test_windows_are_per_content() -> None:
    changes = WindowChanges(watermark_ms=None)
    changes.observe("a", T0)
    changes.observe("b", T0)
    changes.observe("a", T0 + 1)
    assert changes.counts == {("a", T0): 2, ("b", T0): 1}
