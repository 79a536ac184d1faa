"""The HTTP API over the wire (a real uvicorn), on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

START = datetime(2025, 6, 1, 20, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def client(data_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=data_url, timeout=10) as client:
        yield client


def activity(user: str, minute: int, content: str = "title-1", **fields: Any) -> dict[str, Any]:
    return {"user_id": user, "content_id": content,
            "activity_time": (START + timedelta(minutes=minute)).isoformat(), **fields}


def write(client: httpx.Client, *items: dict[str, Any]) -> list[dict[str, Any]]:
    answer = client.post("/activities/batch", json={"activities": list(items)})
    assert answer.status_code == 200, answer.text
    stored: list[dict[str, Any]] = answer.json()["activities"]
    return stored


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """The value of one series; every series also carries the service's version."""
    labels["version"] = client.get("/version").json()["version"]
    series = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} is not exported")


def cache_count(client: httpx.Client, result: str) -> float:
    return metric(client, "data_cache_requests_total", result=result)


def test_written_activities_read_back_newest_first(client: httpx.Client, user: str) -> None:
    write(client, activity(user, 1, "a"), activity(user, 3, "c"), activity(user, 2, "b"))
    page = client.get(f"/users/{user}/activities").json()
    assert [a["content_id"] for a in page["activities"]] == ["c", "b", "a"]
    assert page["next_cursor"] is None


def test_a_written_activity_reads_back_as_sent(client: httpx.Client, user: str) -> None:
    sent = activity(user, 5, kind="rate", payload={"stars": 4, "device": "tv", "hd": True})
    answer = client.post("/activities", json=sent)
    assert answer.status_code == 201
    stored = answer.json()
    assert answer.headers["location"] == f"/users/{user}/activities/{stored['activity_id']}"
    read = client.get(answer.headers["location"]).json()
    assert read == stored
    assert read["kind"] == "rate"
    # Types compared too: True == 1 in Python, so a bool turned into an int would pass ==.
    assert [(k, v, type(v)) for k, v in read["payload"].items()] == [
        ("stars", 4, int), ("device", "tv", str), ("hd", True, bool)]
    assert datetime.fromisoformat(read["activity_time"]) == START + timedelta(minutes=5)


def test_an_activity_without_a_time_is_stamped_now(client: httpx.Client, user: str) -> None:
    before = datetime.now(UTC)
    stored = client.post("/activities", json={"user_id": user, "content_id": "x"}).json()
    assert before <= datetime.fromisoformat(stored["activity_time"]) <= datetime.now(UTC)
    assert stored["kind"] == "play"


def test_a_retried_write_with_the_same_id_is_stored_once(client: httpx.Client,
                                                         user: str) -> None:
    first = client.post("/activities", json=activity(user, 1, activity_id="evt-1"))
    retry = client.post("/activities", json=activity(user, 2, activity_id="evt-1"))
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json(), "the stored activity wins over the retry's body"
    assert len(client.get(f"/users/{user}/activities").json()["activities"]) == 1


def test_a_batch_reports_how_many_it_created(client: httpx.Client, user: str) -> None:
    client.post("/activities", json=activity(user, 1, activity_id="evt-1"))
    answer = client.post("/activities/batch", json={"activities": [
        activity(user, 1, activity_id="evt-1"), activity(user, 2, activity_id="evt-2")]})
    assert answer.json()["created"] == 1
    assert [a["activity_id"] for a in answer.json()["activities"]] == ["evt-1", "evt-2"]


def test_pages_cover_the_history_once_while_new_activities_arrive(
        client: httpx.Client, user: str) -> None:
    # Pairs share a time, so the id breaks ties across page boundaries.
    history = write(client, *[activity(user, i // 2) for i in range(25)])
    expected = [a["activity_id"] for a in sorted(
        history, key=lambda a: (a["activity_time"], a["activity_id"]), reverse=True)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        page = client.get(f"/users/{user}/activities", params=params).json()
        seen += [a["activity_id"] for a in page["activities"]]
        # Newer than everything paged so far: OFFSET would shift and repeat rows here.
        client.post("/activities", json={"user_id": user, "content_id": "live"})
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


def test_the_first_page_is_cached_until_the_user_writes(client: httpx.Client,
                                                        user: str) -> None:
    write(client, activity(user, 1))
    hits, misses = cache_count(client, "hit"), cache_count(client, "miss")
    first = client.get(f"/users/{user}/activities").json()
    assert client.get(f"/users/{user}/activities").json() == first
    assert (cache_count(client, "hit") - hits, cache_count(client, "miss") - misses) == (1, 1)

    write(client, activity(user, 2, "newer"))
    after = client.get(f"/users/{user}/activities").json()
    assert after["activities"][0]["content_id"] == "newer", "the write invalidated the page"
    assert cache_count(client, "miss") - misses == 2
    assert metric(client, "data_cache_evictions_total", reason="invalidated") >= 1


def test_erasing_a_users_history_removes_it_and_its_cached_pages(
        client: httpx.Client, user: str) -> None:
    write(client, activity(user, 1), activity(user, 2))
    client.get(f"/users/{user}/activities")  # cached now
    assert client.delete(f"/users/{user}/activities").json() == {"user_id": user, "deleted": 2}
    assert client.get(f"/users/{user}/activities").json()["activities"] == []


def test_an_unknown_activity_answers_404(client: httpx.Client, user: str) -> None:
    answer = client.get(f"/users/{user}/activities/nope")
    assert answer.status_code == 404
    assert "has no activity 'nope'" in answer.json()["detail"]


def test_recent_lists_the_newest_activities_of_all_users(client: httpx.Client,
                                                          user: str) -> None:
    other = f"{user}-other"
    client.post("/activities", json={"user_id": user, "content_id": "first"})
    client.post("/activities", json={"user_id": other, "content_id": "second"})
    recent = client.get("/activities/recent", params={"limit": 2}).json()["activities"]
    assert [(a["user_id"], a["content_id"]) for a in recent] == [(other, "second"),
                                                                 (user, "first")]


@pytest.mark.parametrize(("change", "field"), [
    ({"user_id": "has space"}, "body.user_id"),
    ({"content_id": ""}, "body.content_id"),
    ({"kind": "teleport"}, "body.kind"),
    ({"activity_time": "2025-06-01T20:00:00"}, "body.activity_time"),  # no time zone
    ({"activity_time": "2999-01-01T00:00:00Z"}, "body.activity_time"),  # the future
    ({"payload": {"note": "x" * 1100}}, "body.payload"),
    ({"payload": {"nested": {"a": 1}}}, "body.payload"),
    ({"colour": "red"}, "body.colour"),
])
def test_an_invalid_activity_answers_422_naming_the_field(
        client: httpx.Client, user: str, change: dict[str, Any], field: str) -> None:
    answer = client.post("/activities", json={**activity(user, 1), **change})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(field)


def test_a_batch_names_the_position_of_the_bad_activity(client: httpx.Client,
                                                        user: str) -> None:
    future = activity(user, 0, activity_time="2999-01-01T00:00:00Z")
    answer = client.post("/activities/batch", json={"activities": [activity(user, 1), future]})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("body.activities.1.activity_time")


def test_a_batch_repeating_an_id_answers_422(client: httpx.Client, user: str) -> None:
    twice = [activity(user, 1, activity_id="e1"), activity(user, 2, activity_id="e1")]
    answer = client.post("/activities/batch", json={"activities": twice})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("body.activities.1.activity_id")


def test_a_batch_over_100_activities_answers_422(client: httpx.Client, user: str) -> None:
    small = {"user_id": user, "content_id": "c"}
    answer = client.post("/activities/batch", json={"activities": [small] * 101})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("body.activities")


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": 0}, "query.limit"),
    ({"limit": 101}, "query.limit"),
    ({"cursor": "forged"}, "query.cursor"),
])
def test_bad_paging_parameters_answer_422_naming_them(
        client: httpx.Client, user: str, params: dict[str, Any], field: str) -> None:
    answer = client.get(f"/users/{user}/activities", params=params)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(field)


def test_malformed_json_answers_400(client: httpx.Client) -> None:
    answer = client.post("/activities", content=b'{"user_id": ',
                         headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["detail"]


def test_database_calls_are_timed_by_operation(client: httpx.Client, user: str) -> None:
    client.get(f"/users/{user}/activities")
    assert metric(client, "data_db_query_duration_seconds_count", operation="page") >= 1
