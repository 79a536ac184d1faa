"""The stack's PostgreSQL (the store, and Prefect's database) restarted mid-run.

The fault: ``shipyard down --only postgres`` then ``up --only postgres`` while a run waits
for its judgment and another process keeps writing to the store. The writes wait for the
database to come back (``Store.writing`` rides out a restart) and none is lost; the run
goes on when answered, and the next run succeeds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import RunRecord, Store
from tests.support.judgment_flow import register_deployments, start_probe
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def _until(check, *, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"still waiting after {seconds:.0f}s for {what}"
        time.sleep(0.2)
    return found


@pytest.fixture(scope="module")
def store(prefect_stack: Stack) -> Iterator[Store]:
    asyncio.run(register_deployments())
    opened = Store.open(prefect_stack.store_url)
    assert opened.engine.dialect.name == "postgresql"
    yield opened
    opened.close()


def _waiting(store: Store) -> RunRecord:
    started = asyncio.run(start_probe(store))
    return _until(lambda: next((r for r in [store.get_run(started.id)]
                                if r.stage("judgment").state is State.WAITING), None),
                  seconds=120, what=f"run {started.short_id} to wait for its judgment")


def test_writes_ride_out_a_restart_and_the_waiting_run_goes_on(prefect_stack: Stack,
                                                               store: Store) -> None:
    waiting = _waiting(store)
    writer = store.create_run("restart-probe", [StageSpec("write")], trigger="test")
    store.transition_stage(writer.id, "write", State.RUNNING, reason="Started")
    written: list[float] = []  # how long each write took
    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                store.append_log(writer.id, "write", f"line {len(written)}\n")
            except Exception as err:  # counted: the test fails on any
                failures.append(err)
            written.append(time.monotonic() - began)
            time.sleep(0.05)

    thread = threading.Thread(target=keep_writing, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        down_at = time.monotonic()
        down = prefect_stack.shipyard("down", "--only", "postgres", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        time.sleep(2)  # the database is away for a while
        up = prefect_stack.shipyard("up", "--only", "postgres", "--only", "prefect",
                                    timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        away = time.monotonic() - down_at
        time.sleep(1)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert failures == [], failures[:3]
    lines = "".join(chunk.text for chunk in store.read_logs(writer.id, "write"))
    assert lines.count("\n") == len(written)  # each write is there, once
    print(f"postgres away {away:.1f}s; {len(written)} writes, the longest waited "
          f"{max(written):.1f}s, none lost")
    store.transition_stage(writer.id, "write", State.SUCCEEDED, reason="Succeeded")

    answered = prefect_stack.shipyard("approve", waiting.short_id, timeout=120)
    assert answered.returncode == 0, answered.stdout + answered.stderr
    done = _until(lambda: (r := store.get_run(waiting.id)).state.is_terminal and r,
                  seconds=120, what=f"run {waiting.short_id} to end")
    assert done.state is State.SUCCEEDED, (done.reason, done.message)
    # The next run starts, waits and ends as usual.
    following = _waiting(store)
    approved = prefect_stack.shipyard("approve", following.short_id, timeout=120)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    after = _until(lambda: (r := store.get_run(following.id)).state.is_terminal and r,
                   seconds=120, what=f"run {following.short_id} to end")
    assert after.state is State.SUCCEEDED
