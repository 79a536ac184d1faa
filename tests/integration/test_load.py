"""The load generator against a real app (discovery, run as `python -m discovery` on
loopback): the rate, the caps and the timeout hold, versions come from /version, failures
and a dead server are counted as such."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Iterator

import pytest
from servicekit.testing import ModuleProcess, module_process

from shipyard.adapters.load import LoadSpec, run_load, start_load
from shipyard.domain.traffic import Sample, summarize
from tests.support.stack import PROJECT

pytestmark = pytest.mark.integration

DISCOVERY = PROJECT / "apps" / "discovery"
VERSION = "4.2.0"


def discovery(**env: str) -> contextlib.AbstractContextManager[ModuleProcess]:
    return module_process("discovery", DISCOVERY, {"APP_VERSION": VERSION, **env})


@pytest.fixture(scope="module")
def server() -> Iterator[ModuleProcess]:
    with discovery() as process:
        yield process


@pytest.fixture
def own_server() -> Iterator[ModuleProcess]:
    """A server this test alone uses (and may kill)."""
    with discovery() as process:
        yield process


def max_in_flight(samples: list[Sample]) -> int:
    events = sorted([(s.started, 1) for s in samples]
                    + [(s.started + s.latency, -1) for s in samples])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_requests_go_out_on_schedule_and_read_the_version(server):
    spec = LoadSpec(server.base_url, rate_per_second=50, duration_seconds=2.0)
    began = time.monotonic()
    samples = asyncio.run(run_load(spec))
    took = time.monotonic() - began
    assert len(samples) == 100  # due at 0, 0.02, ..., 1.98 s
    assert {(s.status, s.version) for s in samples} == {(200, VERSION)}
    lags = [s.started - i / 50 for i, s in enumerate(sorted(samples, key=lambda s: s.started))]
    assert min(lags) >= 0
    assert statistics.median(lags) < 0.01 and max(lags) < 0.25, lags
    assert 1.98 <= took < 2.0 + spec.timeout_seconds


def test_the_request_cap_ends_the_run_early(server):
    spec = LoadSpec(server.base_url, rate_per_second=500, duration_seconds=5.0,
                    max_requests=25)
    began = time.monotonic()
    samples = asyncio.run(run_load(spec))
    assert len(samples) == 25
    assert time.monotonic() - began < 1.0


def test_paths_are_requested_in_turn(server):
    spec = LoadSpec(server.base_url, paths=("/version", "/healthz"), rate_per_second=100,
                    max_requests=10)
    samples = sorted(asyncio.run(run_load(spec)), key=lambda s: s.started)
    # /healthz answers JSON too, but names no version.
    assert [s.version for s in samples] == [VERSION, ""] * 5


def test_5xx_answers_are_failures_with_their_status():
    with discovery(FAULT_ERROR_RATE="1.0") as process:
        spec = LoadSpec(process.base_url, paths=("/version", "/eureka/apps"),
                        rate_per_second=100, max_requests=20)
        samples = asyncio.run(run_load(spec))
    summary = summarize(samples)
    assert (summary.requests, summary.failures) == (20, 10)
    assert {s.status for s in samples if s.failed} <= set(range(500, 600))


def test_a_slow_answer_ends_at_the_timeout_as_status_0():
    with discovery(FAULT_LATENCY_MS="2000") as process:
        spec = LoadSpec(process.base_url, paths=("/eureka/apps",), rate_per_second=20,
                        max_requests=4, timeout_seconds=0.3)
        began = time.monotonic()
        samples = asyncio.run(run_load(spec))
        took = time.monotonic() - began
    assert [s.status for s in samples] == [0, 0, 0, 0]
    assert all(0.29 <= s.latency < 0.5 for s in samples), samples
    assert took < 1.0


def test_no_more_than_concurrency_requests_are_in_flight_and_the_rest_go_out_late():
    with discovery(FAULT_LATENCY_MS="200") as process:
        spec = LoadSpec(process.base_url, paths=("/eureka/apps",), rate_per_second=100,
                        duration_seconds=1.0, concurrency=4)
        samples = asyncio.run(run_load(spec))
    assert max_in_flight(samples) <= 4
    # 4 slots x 1 s / 0.2 s per request: about 20 of the 100 due requests went out.
    assert 12 <= len(samples) <= 28
    assert all(s.status == 200 for s in samples)


def test_a_killed_server_turns_into_connection_errors(own_server):
    async def load_and_kill() -> tuple[list[Sample], float]:
        run = start_load(LoadSpec(own_server.base_url, rate_per_second=40,
                                  duration_seconds=2.0, timeout_seconds=1.0))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(own_server.kill)
        killed = run.since_start(time.monotonic())
        return await run.wait(), killed

    samples, killed = asyncio.run(load_and_kill())
    before = [s for s in samples if s.started + s.latency < killed - 0.1]
    after = [s for s in samples if s.started > killed]
    assert len(samples) == 80
    assert len(before) >= 30 and {s.status for s in before} == {200}
    assert len(after) >= 30 and {(s.status, s.version) for s in after} == {(0, "")}
    assert max(s.latency for s in after) < 0.5  # refused at once, not waiting for a timeout


def test_stopping_ends_the_run_before_its_duration(server):
    async def stop_early() -> tuple[list[Sample], float]:
        async with start_load(LoadSpec(server.base_url, rate_per_second=20,
                                       duration_seconds=30)) as run:
            await asyncio.sleep(0.5)
        return run.samples, time.monotonic() - run.started_at

    samples, took = asyncio.run(stop_early())
    assert 9 <= len(samples) <= 12
    assert took < 1.0


def _access_entries(process: ModuleProcess, path: str) -> list[dict[str, object]]:
    return [entry for entry in process.log_entries() if entry.get("path") == path]


def _client_ports(process: ModuleProcess, path: str) -> set[str]:
    return {str(entry["client"]) for entry in _access_entries(process, path)
            if entry.get("client")}


@pytest.mark.parametrize(("keep_alive", "connections"), [(True, 1), (False, 30)])
def test_keep_alive_reuses_the_connection_and_can_be_turned_off(keep_alive, connections):
    with discovery(LOG_LEVEL="INFO") as process:
        # One slot: with keep-alive, every request finds the previous one's connection idle.
        spec = LoadSpec(process.base_url, paths=("/eureka/apps",), rate_per_second=50,
                        max_requests=30, concurrency=1, keep_alive=keep_alive)
        assert {s.status for s in asyncio.run(run_load(spec))} == {200}
        # The app's access log reaches us through a reader thread: wait for all 30
        # lines before counting (on a busy machine the last ones come a little later).
        deadline = time.monotonic() + 15
        while len(_access_entries(process, "/eureka/apps")) < 30 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        ports = _client_ports(process, "/eureka/apps")
    assert len(ports) == connections


@pytest.mark.parametrize(
    "bad",
    [{"base_url": "localhost:8080"}, {"paths": ()}, {"paths": ("version",)},
     {"rate_per_second": 0}, {"duration_seconds": -1}, {"timeout_seconds": float("inf")},
     {"max_requests": 0}, {"concurrency": 0}],
)
def test_a_spec_that_could_not_run_is_refused(bad):
    with pytest.raises(ValueError, match="must"):
        LoadSpec(**{"base_url": "http://127.0.0.1:1", **bad})


def test_a_load_needs_a_running_event_loop():
    with pytest.raises(RuntimeError):
        start_load(LoadSpec("http://127.0.0.1:1"))
