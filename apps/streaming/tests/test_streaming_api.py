"""The HTTP API end to end, on a real uvicorn server writing real files. Most tests share
one server and make their own topics; a test that needs other settings runs its own."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

import httpx
import pytest

from .conftest import VERSION, FakeDiscovery, ServeStreaming, Streaming, wait_for

NewTopic = Callable[[int], str]

# -- topics -------------------------------------------------------------------------------


def test_a_created_topic_is_described_with_its_empty_partitions(streaming: Streaming) -> None:
    response = streaming.http.post("/topics", json={"name": "orders", "partitions": 2})
    assert response.status_code == 201
    assert streaming.http.get("/topics/orders").json() == {"name": "orders", "partitions": [
        {"partition": 0, "start_offset": 0, "end_offset": 0},
        {"partition": 1, "start_offset": 0, "end_offset": 0}]}
    names = [t["name"] for t in streaming.http.get("/topics").json()["topics"]]
    assert {"orders", "views"} <= set(names) and names == sorted(names)


def test_a_topic_gets_the_default_partition_count_when_none_is_given(
        streaming: Streaming) -> None:
    response = streaming.http.post("/topics", json={"name": "defaulted"})
    assert len(response.json()["partitions"]) == 3


def test_creating_an_existing_topic_answers_409(streaming: Streaming, new_topic: NewTopic
                                                ) -> None:
    name = new_topic(2)
    response = streaming.http.post("/topics", json={"name": name, "partitions": 2})
    assert response.status_code == 409
    assert "already exists with 2 partition" in response.json()["detail"]


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "../etc", "partitions": 1}, "body.name"),
    ({"name": "invalid-a", "partitions": 0}, "body.partitions"),
    ({"name": "invalid-b", "partitions": 65}, "body.partitions"),
    ({"name": "invalid-c", "partitions": "2"}, "body.partitions"),
])
def test_an_invalid_topic_answers_422_naming_the_field(streaming: Streaming,
                                                        body: dict[str, object],
                                                        field: str) -> None:
    response = streaming.http.post("/topics", json=body)
    assert response.status_code == 422
    assert field in response.json()["detail"]


# -- producing and reading ---------------------------------------------------------------


def test_records_of_one_key_go_to_one_partition_in_the_order_produced(
        streaming: Streaming, new_topic: NewTopic) -> None:
    topic = new_topic(4)
    placed = [streaming.produce(topic, {"key": "user-7", "value": {"n": n}})[0]
              for n in range(5)]
    [partition] = {p["partition"] for p in placed}
    assert [p["offset"] for p in placed] == [0, 1, 2, 3, 4]
    assert [r["value"] for r in streaming.read(topic, partition)] == [
        {"n": n} for n in range(5)]


def test_a_batch_answers_partition_and_offset_per_record_in_request_order(
        streaming: Streaming, new_topic: NewTopic) -> None:
    topic = new_topic(3)
    keys = ["a", "b", "a", "c", "b", "a"]
    placed = streaming.produce(topic, *({"key": k, "value": i} for i, k in enumerate(keys)))
    partitions_of = defaultdict(set)
    for sent, (key, answer) in enumerate(zip(keys, placed, strict=True)):
        partitions_of[key].add(answer["partition"])
        [record] = streaming.read(topic, answer["partition"], answer["offset"], 1)
        assert (record["key"], record["value"]) == (key, sent)
    assert all(len(partitions) == 1 for partitions in partitions_of.values())


def test_records_without_a_key_are_spread_over_the_partitions(
        streaming: Streaming, new_topic: NewTopic) -> None:
    topic = new_topic(3)
    placed = streaming.produce(topic, *({"value": n} for n in range(6)))
    assert sorted(p["partition"] for p in placed) == [0, 0, 1, 1, 2, 2]


def test_a_record_carries_its_timestamp_key_and_json_value_back(
        streaming: Streaming, new_topic: NewTopic) -> None:
    topic = new_topic(1)
    value = {"nested": [1, 2.5, None, True, "é"]}
    streaming.produce(topic, {"key": "k", "value": value, "timestamp": 1_700_000_000_000})
    assert streaming.read(topic, 0) == [{"partition": 0, "offset": 0, "key": "k",
                                         "timestamp": 1_700_000_000_000, "value": value}]


def test_a_read_from_an_offset_answers_the_next_offset_and_the_range(
        streaming: Streaming, new_topic: NewTopic) -> None:
    topic = new_topic(1)
    streaming.produce(topic, *({"value": n} for n in range(5)))
    body = streaming.http.get(f"/topics/{topic}/partitions/0/records",
                              params={"offset": 1, "max": 2}).json()
    assert [r["offset"] for r in body["records"]] == [1, 2]
    assert (body["next_offset"], body["start_offset"], body["end_offset"]) == (3, 0, 5)


def test_reading_past_the_end_answers_416_with_the_valid_range(
        streaming: Streaming, new_topic: NewTopic) -> None:
    topic = new_topic(1)
    streaming.produce(topic, {"value": 1})
    response = streaming.http.get(f"/topics/{topic}/partitions/0/records",
                                  params={"offset": 5})
    assert response.status_code == 416
    assert (response.json()["start_offset"], response.json()["end_offset"]) == (0, 1)
    assert "out of range" in response.json()["detail"]


@pytest.mark.parametrize("partition", [3, -1])
def test_a_missing_partition_answers_400_naming_the_valid_ones(
        streaming: Streaming, new_topic: NewTopic, partition: int) -> None:
    topic = new_topic(3)
    response = streaming.http.get(f"/topics/{topic}/partitions/{partition}/records")
    assert response.status_code == 400
    assert "partitions 0 to 2" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/topics/nope/records"),
    ("GET", "/topics/nope/partitions/0/records"),
    ("GET", "/topics/nope"),
    ("GET", "/groups/g/topics/nope/records"),
])
def test_an_unknown_topic_answers_404(streaming: Streaming, method: str, path: str) -> None:
    response = streaming.http.request(method, path, json={"records": [{"value": 1}]})
    assert response.status_code == 404
    assert "'nope' does not exist" in response.json()["detail"]


def test_malformed_json_answers_400(streaming: Streaming) -> None:
    response = streaming.http.post("/topics/views/records", content=b'{"records": [',
                                   headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]


@pytest.mark.parametrize(("body", "field"), [
    ({"records": []}, "body.records"),
    ({"records": [{"key": "k"}]}, "body.records.0.value"),
    ({"records": [{"value": 1, "timestamp": -5}]}, "body.records.0.timestamp"),
    ({"records": [{"value": 1, "partition": 2}]}, "body.records.0.partition"),
])
def test_an_invalid_batch_answers_422_naming_the_field(streaming: Streaming,
                                                       body: dict[str, object],
                                                       field: str) -> None:
    response = streaming.http.post("/topics/views/records", json=body)
    assert response.status_code == 422
    assert field in response.json()["detail"]


def test_a_batch_over_the_limit_answers_422(serve: ServeStreaming) -> None:
    with serve(MAX_BATCH_RECORDS="3") as streaming:
        response = streaming.http.post("/topics/views/records",
                                       json={"records": [{"value": n} for n in range(4)]})
    assert response.status_code == 422
    assert "at most 3 records" in response.json()["detail"]


def test_twenty_concurrent_producers_get_distinct_contiguous_offsets(
        streaming: Streaming, new_topic: NewTopic) -> None:
    topic = new_topic(2)

    async def produce_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=streaming.url, timeout=10) as client:
            return await asyncio.gather(*(
                client.post(f"/topics/{topic}/records", json={"records": [
                    {"key": "same", "value": [writer, n]} for n in range(5)]})
                for writer in range(20)))

    answers = asyncio.run(produce_all())
    assert {a.status_code for a in answers} == {200}
    offsets = sorted(o["offset"] for a in answers for o in a.json()["offsets"])
    assert offsets == list(range(100))
    for answer in answers:  # each batch is appended whole, in order
        mine = [o["offset"] for o in answer.json()["offsets"]]
        assert mine == list(range(mine[0], mine[0] + 5))
    [partition] = {o["partition"] for a in answers for o in a.json()["offsets"]}
    assert [r["offset"] for r in streaming.read(topic, partition)] == list(range(100))


# -- consumer groups ---------------------------------------------------------------------


def test_committed_offsets_are_read_back_with_the_lag(streaming: Streaming,
                                                      new_topic: NewTopic) -> None:
    topic = new_topic(2)
    placed = streaming.produce(topic, *({"key": "k", "value": n} for n in range(4)))
    partition = placed[0]["partition"]
    commit = streaming.http.post("/groups/billing/offsets", json={
        "topic": topic, "offsets": [{"partition": partition, "offset": 3}]})
    assert commit.status_code == 200
    offsets = streaming.http.get("/groups/billing/offsets", params={"topic": topic}).json()
    mine = [o for o in offsets["offsets"] if o["partition"] == partition]
    assert mine == [{"topic": topic, "partition": partition, "committed": 3, "end_offset": 4,
                     "lag": 1}]
    assert streaming.metric("streaming_consumer_lag", group="billing", topic=topic,
                            partition=str(partition)) == 1


def test_a_group_reads_from_its_commit_and_moves_on_when_it_commits(
        streaming: Streaming, new_topic: NewTopic) -> None:
    topic = new_topic(1)
    streaming.produce(topic, *({"value": n} for n in range(5)))
    path = f"/groups/g/topics/{topic}/records"
    first = streaming.http.get(path, params={"max": 3}).json()
    assert [r["value"] for r in first["records"]] == [0, 1, 2]
    assert streaming.http.get(path, params={"max": 3}).json()["records"] == first["records"]
    streaming.http.post("/groups/g/offsets", json={"topic": topic,
                                                   "offsets": first["positions"]})
    rest = streaming.http.get(path, params={"max": 10, "commit": "true"}).json()
    assert [r["value"] for r in rest["records"]] == [3, 4] and rest["committed"]
    assert streaming.http.get(path).json()["records"] == []


def test_committing_past_the_end_answers_400_with_the_valid_range(
        streaming: Streaming, new_topic: NewTopic) -> None:
    topic = new_topic(1)
    response = streaming.http.post("/groups/g/offsets", json={
        "topic": topic, "offsets": [{"partition": 0, "offset": 1}]})
    assert response.status_code == 400
    assert "out of range" in response.json()["detail"]


def test_committing_for_the_views_jobs_group_answers_403(streaming: Streaming) -> None:
    response = streaming.http.post("/groups/views-aggregator/offsets", json={
        "topic": "views", "offsets": [{"partition": 0, "offset": 0}]})
    assert response.status_code == 403


def test_an_invalid_group_name_answers_422(streaming: Streaming) -> None:
    assert streaming.http.get("/groups/bad%20name/offsets").status_code == 422


# -- operations --------------------------------------------------------------------------


def test_it_is_ready_once_recovered_and_caught_up(streaming: Streaming) -> None:
    assert streaming.http.get("/readyz").json() == {"ready": True, "detail": "ready"}


def test_it_is_not_ready_while_the_views_job_catches_up(serve: ServeStreaming) -> None:
    with serve() as streaming:
        streaming.app.state.views_job.caught_up = False
        readiness = streaming.http.get("/readyz")
    assert readiness.status_code == 503
    assert list(readiness.json()["failed"]) == ["views-caught-up"]


def test_it_registers_with_discovery(streaming: Streaming, discovery: FakeDiscovery) -> None:
    def registered() -> list[dict[str, object]]:
        return [body for name, body in discovery.registrations if name == "streaming"]

    wait_for(lambda: bool(registered()))
    assert registered()[-1]["metadata"] == {"version": VERSION}


def test_metrics_count_records_and_show_end_offsets(streaming: Streaming,
                                                    new_topic: NewTopic) -> None:
    topic = new_topic(1)
    streaming.produce(topic, {"value": 1}, {"value": 2})
    streaming.read(topic, 0)
    assert streaming.metric("streaming_records_produced_total", topic=topic) == 2
    assert streaming.metric("streaming_records_consumed_total", topic=topic) == 2
    assert streaming.metric("streaming_log_end_offset", topic=topic, partition="0") == 2
