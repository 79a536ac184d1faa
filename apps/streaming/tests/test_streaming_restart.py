"""Durability: a server restarted on the same DATA_DIR serves everything answered 200
before, committed offsets and window counts included, and counts nothing twice."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from servicekit.testing import config_for_tests
from streaming.api import create_app
from streaming.config import Settings
from streaming.files import DataDirLocked

from .conftest import FakeDiscovery, ServeStreaming

T0 = 1_700_000_040_000


def test_records_offsets_and_windows_survive_a_restart(serve: ServeStreaming) -> None:
    with serve(SEGMENT_BYTES="512") as before:  # small segments: several per partition
        before.create_topic("orders", 2)
        placed = before.produce("orders", *({"key": f"k{n % 3}", "value": n}
                                            for n in range(40)))
        partition = placed[0]["partition"]
        commit = before.http.post("/groups/billing/offsets", json={
            "topic": "orders", "offsets": [{"partition": partition, "offset": 1}]})
        assert commit.status_code == 200
        before.produce("views", *({"key": "a", "value": {"content_id": "a", "ts": T0 + n}}
                                  for n in range(5)))
        before.wait_until_aggregated()
        records = {p: before.read("orders", p) for p in (0, 1)}
        views = before.http.get("/aggregations/views").json()
    assert sum(len(r) for r in records.values()) == len(placed) == 40

    with serve(SEGMENT_BYTES="512") as after:
        assert after.http.get("/readyz").status_code == 200
        assert {p: after.read("orders", p) for p in (0, 1)} == records
        committed = after.http.get("/groups/billing/offsets",
                                   params={"topic": "orders"}).json()["offsets"]
        assert committed[partition]["committed"] == 1
        assert after.http.get("/aggregations/views").json() == views
        after.produce("views", {"key": "a", "value": {"content_id": "a", "ts": T0 + 10}})
        after.wait_until_aggregated()
        [window] = after.http.get("/aggregations/views").json()["windows"]
        next_offset = after.produce("orders", {"key": "k0", "value": "next"})[0]
    assert window["count"] == 6  # the five from before, once, and the new one
    assert next_offset["offset"] == len(records[next_offset["partition"]])


def test_a_second_server_on_the_same_data_dir_refuses_to_start(
        serve: ServeStreaming, discovery: FakeDiscovery) -> None:
    async def start(app: FastAPI) -> None:
        async with app.router.lifespan_context(app):
            pass

    with serve() as first:
        second = create_app(config_for_tests(DISCOVERY_URL=discovery.url),
                            settings=Settings.from_env({"DATA_DIR": str(first.data_dir)}))
        with pytest.raises(DataDirLocked, match="in use by another streaming process"):
            asyncio.run(start(second))
