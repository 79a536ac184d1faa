"""Views per content per minute over HTTP: counts, finality, the late rule and its metric.
Each test runs its own server: the watermark belongs to the whole views topic."""

from __future__ import annotations

from typing import Any

from .conftest import ServeStreaming, Streaming

T0 = 1_700_000_040_000  # 2023-11-14T22:14:00Z, a minute boundary
MINUTE = 60_000


def view(streaming: Streaming, content_id: str, ts_ms: int) -> None:
    streaming.produce("views", {"key": content_id,
                                "value": {"content_id": content_id, "user_id": "u1",
                                          "ts": ts_ms}})
    streaming.wait_until_aggregated()


def windows(streaming: Streaming, **params: str) -> list[dict[str, Any]]:
    response = streaming.http.get("/aggregations/views", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["windows"])


def test_views_are_counted_per_content_per_minute_and_final_behind_the_watermark(
        serve: ServeStreaming) -> None:
    with serve() as streaming:
        for content_id, at in [("a", T0 + 1_000), ("a", T0 + 2_000), ("b", T0 + 3_000),
                               ("a", T0 + MINUTE + 40_000)]:
            view(streaming, content_id, at)
        body = streaming.http.get("/aggregations/views").json()
    assert body["watermark"] == "2023-11-14T22:15:10Z"
    assert body["window_seconds"] == 60 and body["allowed_lateness_seconds"] == 30
    assert [(w["content_id"], w["window_start"], w["window_end"], w["count"], w["final"])
            for w in body["windows"]] == [
        ("a", "2023-11-14T22:14:00Z", "2023-11-14T22:15:00Z", 2, True),
        ("b", "2023-11-14T22:14:00Z", "2023-11-14T22:15:00Z", 1, True),
        ("a", "2023-11-14T22:15:00Z", "2023-11-14T22:16:00Z", 1, False),
    ]


def test_windows_are_filtered_by_content_and_start_time(serve: ServeStreaming) -> None:
    with serve() as streaming:
        for content_id, at in [("a", T0), ("b", T0), ("a", T0 + MINUTE), ("a", T0 + 2 * MINUTE)]:
            view(streaming, content_id, at)
        found = windows(streaming, content_id="a", **{"from": "2023-11-14T22:15:00Z",
                                                      "to": "2023-11-14T22:16:00Z"})
    assert [(w["content_id"], w["window_start"]) for w in found] == [
        ("a", "2023-11-14T22:15:00Z")]


def test_a_late_event_is_counted_as_late_not_in_the_final_window(
        serve: ServeStreaming) -> None:
    with serve(AGGREGATION_ALLOWED_LATENESS_SECONDS="30") as streaming:
        view(streaming, "a", T0 + 10_000)
        view(streaming, "a", T0 + MINUTE + 45_000)  # watermark 22:15:15: 22:14 is final
        view(streaming, "a", T0 + 50_000)  # for 22:14, after it was final
        [closed] = windows(streaming, content_id="a", to="2023-11-14T22:15:00Z")
        late_total = streaming.metric("streaming_late_events_total", topic="views")
    assert (closed["count"], closed["late"], closed["final"]) == (1, 1, True)
    assert late_total == 1


def test_an_event_within_the_allowed_lateness_still_counts(serve: ServeStreaming) -> None:
    with serve(AGGREGATION_ALLOWED_LATENESS_SECONDS="30") as streaming:
        view(streaming, "a", T0 + MINUTE + 20_000)  # watermark 22:14:50: 22:14 still open
        view(streaming, "a", T0 + 55_000)
        [window] = windows(streaming, content_id="a", to="2023-11-14T22:15:00Z")
    assert (window["count"], window["late"], window["final"]) == (1, 0, False)


def test_a_bad_time_range_answers_422(streaming: Streaming) -> None:
    response = streaming.http.get("/aggregations/views", params={"from": "yesterday"})
    assert response.status_code == 422
    assert "query.from" in response.json()["detail"]
