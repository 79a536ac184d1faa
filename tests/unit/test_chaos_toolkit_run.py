"""Real Chaos Toolkit runs (``chaostoolkit-lib``) of experiments made of Shipyard's load
probe and SLO tolerance, against a real HTTP server on 127.0.0.1, with actions and
rollbacks of this module that change how the server answers: the probe, tolerance,
verdict and rollback wiring end to end, in a worker thread as the gate runs it. And the
fault actions' wait for the answers to show (or stop showing) a fault, against the same
server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from shipyard.adapters import chaos_toolkit
from shipyard.domain.chaos_experiments import ACTIVITIES_MODULE, InvalidChaosExperiment
from shipyard.domain.chaos_journal import report_from_journal
from shipyard.domain.fault_files import Faults
from stages.chaos import prepare_experiment, run_prepared_experiment
from stages.chaos_activities import _wait_for

HERE = "tests.unit.test_chaos_toolkit_run"
"""This module as the experiments' Python providers name it."""


# -- the app: a local server whose answers the actions change ------------------------------

class World:
    """How the server answers now, and what the actions told it, in order."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.failing = False
        self.marks: list[str] = []


class Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        world: World = self.server.world  # type: ignore[attr-defined]
        time.sleep(world.delay)
        self._send(500 if world.failing else 200, {"version": "v1"})

    def do_POST(self) -> None:
        world: World = self.server.world  # type: ignore[attr-defined]
        changes = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if "delay" in changes:
            world.delay = float(changes["delay"])
        if "failing" in changes:
            world.failing = changes["failing"] == "true"
        if "mark" in changes:
            world.marks.append(changes["mark"])
        self._send(200, {"delay": world.delay, "failing": world.failing})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class Server:
    def __init__(self) -> None:
        self.world = World()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        self.httpd.world = self.world  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[Server]:
    started = Server()
    thread = threading.Thread(target=started.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield started
    finally:
        started.httpd.shutdown()
        started.httpd.server_close()


# -- this module's actions, as an experiment calls them ------------------------------------

def control(url: str, **changes: Any) -> dict[str, Any]:
    """Change how the server at ``url`` answers (``delay``, ``failing``) or leave a
    ``mark``."""
    query = urlencode({k: str(v).lower() if isinstance(v, bool) else v
                       for k, v in changes.items()})
    request = urllib.request.Request(f"{url}/control?{query}", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 -- test URL
        return dict(json.loads(answer.read()))


def explode() -> None:
    raise RuntimeError("the action broke")


def nothing_measured() -> dict[str, Any]:
    return {"failure_ratio": None}


# -- experiments ---------------------------------------------------------------------------

def steady_state(tolerance: Any = None, *, seconds: float = 0.5) -> dict[str, Any]:
    return {"type": "probe", "name": "slo",
            "provider": {"type": "python", "module": ACTIVITIES_MODULE,
                         "func": "http_steady_state",
                         "arguments": {"url": "${shipyard_service_url}", "paths": ["/work"],
                                       "seconds": seconds, "rate_per_second": 20,
                                       "timeout_seconds": 1}},
            "tolerance": tolerance or {
                "type": "probe", "name": "within-slo",
                "provider": {"type": "python", "module": ACTIVITIES_MODULE,
                             "func": "within_slo",
                             "arguments": {"max_failure_ratio": 0.01,
                                           "max_latency_p99_seconds": 0.25,
                                           "min_load_share": 0.25}}}}


def act(name: str, func: str = "control", **arguments: Any) -> dict[str, Any]:
    return {"type": "action", "name": name,
            "provider": {"type": "python", "module": HERE, "func": func,
                         "arguments": arguments}}


def experiment(server: Server, *, probe: dict[str, Any] | None = None,
               method: list[dict[str, Any]] | None = None,
               rollbacks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    document = {"title": "the app keeps its SLO", "description": "a test",
                "steady-state-hypothesis": {"title": "fast and right",
                                            "probes": [probe or steady_state()]},
                "method": method if method is not None else [
                    act("mark", url="${shipyard_service_url}", mark="method")],
                "rollbacks": rollbacks if rollbacks is not None else [
                    act("heal", url="${shipyard_service_url}", delay=0, failing=False,
                        mark="rollback")]}
    return prepare_experiment(document, {"shipyard_service_url": server.url},
                              source="test.yaml", allowed=[HERE])


def run(document: dict[str, Any]) -> tuple[Any, list[str]]:
    """The report of a run in a worker thread, as the gate runs it, and its progress."""
    lines: list[str] = []

    async def log(line: str) -> None:
        lines.append(line)

    report = asyncio.run(run_prepared_experiment(document, source="test.yaml", target="",
                                                 log=log))
    return report, lines


def test_a_steady_state_kept_through_the_method_passes_and_the_rollbacks_still_run(server):
    report, lines = run(experiment(server))
    assert report.verdict == "passed" and report.reason == "", report.summary()
    assert server.world.marks == ["method", "rollback"]
    assert [p.name for p in report.before.probes] == ["requests", "failure-ratio",
                                                      "latency-p99"]
    assert report.after is not None and report.after.met
    assert report.before.probes[0].value is not None and report.before.probes[0].value >= 5
    assert lines[0] == "steady state before the method: probing"
    assert "method: starting" in lines and "rollbacks: starting" in lines
    assert lines[-1] == "action heal: succeeded ({\"delay\": 0.0, \"failing\": false})"


def test_a_failing_hypothesis_deviates_and_runs_the_experiments_rollbacks(server):
    slow_down = act("slow-down", url="${shipyard_service_url}", delay=0.5)
    report, _ = run(experiment(server, method=[slow_down]))
    assert report.verdict == "deviated" and report.reason == "ChaosDeviated"
    assert report.after is not None
    latency = next(p for p in report.after.probes if p.name == "latency-p99")
    assert not latency.met and latency.value is not None and latency.value >= 0.5
    assert [(r.name, r.succeeded) for r in report.rollbacks] == [("heal", True)]
    assert server.world.delay == 0 and server.world.marks == ["rollback"]
    assert report.journal is not None and report.journal["deviated"] is True


def test_a_steady_state_unmet_before_skips_the_method_but_not_the_rollbacks(server):
    server.world.delay = 0.5
    report, _ = run(experiment(server))
    assert report.reason == "SteadyStateNotMet" and report.after is None
    assert server.world.marks == ["rollback"] and server.world.delay == 0


def test_chaos_toolkits_own_range_tolerance_judges_a_field_of_the_window(server):
    ranged = steady_state({"type": "range", "range": [0, 0.01], "target": "failure_ratio"})
    server.world.failing = True
    report, _ = run(experiment(server, probe=ranged))
    assert report.reason == "SteadyStateNotMet"
    [row] = report.before.probes
    assert (row.measure, row.value, row.met) == ("failure_ratio", 1.0, False)
    server.world.failing = False
    report, _ = run(experiment(server, probe=ranged))
    assert report.verdict == "passed", report.summary()


def test_a_probe_that_raises_still_gets_the_rollbacks_run(server):
    # Chaos Toolkit's default strategy would skip them: the run's status is "failed".
    report, _ = run(experiment(server, probe=steady_state(seconds=-1)))
    assert report.reason == "SteadyStateNotMet"
    assert report.before.probes[0].note.startswith("failed: ValueError: seconds must be")
    assert server.world.marks == ["rollback"]


def test_an_action_that_fails_aborts_and_the_rollbacks_still_run(server):
    report, _ = run(experiment(server, method=[act("explode", "explode")]))
    assert report.reason == "ChaosMethodFailed"
    assert report.summary() == "aborted: action explode failed: RuntimeError: the action broke"
    assert server.world.marks == ["rollback"]


def test_the_engine_breaking_midway_still_runs_the_rollbacks(server):
    # Chaos Toolkit's range tolerance cannot compare None: its run raises out of the engine.
    broken = {"type": "probe", "name": "nothing",
              "provider": {"type": "python", "module": HERE, "func": "nothing_measured"},
              "tolerance": {"type": "range", "range": [0, 1], "target": "failure_ratio"}}
    report, _ = run(experiment(server, probe=broken))
    assert report.reason == "ChaosInterrupted"
    assert report.summary() == (
        "aborted: Chaos Toolkit reports the run aborted before the hypothesis was judged: "
        "TypeError: conversion from NoneType to Decimal is not supported")
    assert server.world.marks == ["rollback"]


def test_an_activity_of_a_module_not_allowed_is_refused_before_it_runs(server):
    document = {"title": "t", "description": "d",
                "steady-state-hypothesis": {"title": "h", "probes": [steady_state()]},
                "method": [act("mark", url=server.url, mark="method")]}
    with pytest.raises(InvalidChaosExperiment, match=f"module '{HERE}' is not an allowed"):
        prepare_experiment(document, {"shipyard_service_url": server.url}, source="t.yaml")
    assert server.world.marks == []


def test_a_run_in_the_main_thread_leaves_the_signal_handlers_as_they_were(server):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    journal = chaos_toolkit.run_experiment(experiment(server))
    assert signal.getsignal(signal.SIGTERM) is before
    assert report_from_journal(journal).verdict == "passed"


# -- waiting for a fault file to reach the pods, as the answers show it --------------------

def test_the_wait_ends_once_the_answers_show_the_latency(server):
    server.world.delay = 0.3
    took = _wait_for((server.url, ("/work",)), Faults(latency_ms=300), shown=True,
                     seconds=10, answers=3)
    assert 0 < took < 10


def test_the_wait_for_a_cleared_fault_ends_once_the_answers_are_quick_again(server):
    took = _wait_for((server.url, ("/work",)), Faults(latency_ms=300), shown=False,
                     seconds=10, answers=3)
    assert 0 < took < 10


def test_answers_that_never_show_the_fault_fail_the_wait_saying_why(server):
    with pytest.raises(TimeoutError,
                       match=r"did not show the faults within 2s .*up to 15 s later"):
        _wait_for((server.url, ("/work",)), Faults(error_rate=1.0), shown=True, seconds=2,
                  answers=3)
