"""The one Kubernetes connection's deadlines, against a fake API server on loopback: a call
it does not answer is a KubeError naming the call and the deadline, and abandoned work
sends no further call."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.kube_client import (
    UNAVAILABLE_NOTICES,
    KubeClient,
    KubeError,
    KubeUnreachable,
)


class FakeApiServer(BaseHTTPRequestHandler):
    """Answers /version at once and never answers /slow; counts the calls."""

    protocol_version = "HTTP/1.1"
    calls: list[str] = []

    busy = 0  # how many more calls to answer 503 (an API server starting)

    def do_GET(self) -> None:
        type(self).calls.append(self.path)
        if self.path.startswith("/slow"):
            time.sleep(3)
            return
        if type(self).busy > 0:
            type(self).busy -= 1
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"gitVersion": "v1.34.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeClient]:
    FakeApiServer.calls = []
    FakeApiServer.busy = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {
            "server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "fake", "user": {"token": "t"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}))
    yield KubeClient.from_kubeconfig(kubeconfig)
    server.shutdown()
    server.server_close()


def test_an_answered_call_gives_its_status_and_json(kube: KubeClient):
    assert kube.call("GET", "/version") == (200, {"gitVersion": "v1.34.0"})


def test_a_call_the_api_server_does_not_answer_names_the_call_and_the_deadline(
        kube: KubeClient):
    started = time.monotonic()
    with pytest.raises(KubeError, match=r"GET /slow: the API server did not answer within "
                                        r"0.5 s"):
        kube.call("GET", "/slow", timeout=0.5)
    assert time.monotonic() - started < 2.5  # once: a slow answer is not retried
    assert FakeApiServer.calls == ["/slow"]


def test_abandoned_work_sends_no_further_call(kube: KubeClient):
    def two_calls() -> None:
        with contextlib.suppress(KubeError):  # the first call's own deadline passes
            kube.call("GET", "/slow", timeout=1)
        kube.call("GET", "/version")

    async def stage() -> None:
        async with asyncio.timeout(0.3):
            await run_blocking(two_calls)

    with pytest.raises(TimeoutError):
        asyncio.run(stage())
    time.sleep(0.2)
    assert FakeApiServer.calls == ["/slow"]


def test_a_server_that_is_not_ready_yet_is_asked_again_until_it_answers(
        kube: KubeClient, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("shipyard.adapters.kube_client.UNAVAILABLE_PAUSES", (0.05,) * 4)
    FakeApiServer.busy = 2
    heard: list[str] = []
    UNAVAILABLE_NOTICES.set(heard.append)
    assert kube.call("GET", "/version") == (200, {"gitVersion": "v1.34.0"})
    assert FakeApiServer.calls == ["/version"] * 3
    assert heard == ["the API server did not answer (GET /version: 503); trying again for "
                     "up to 0s", "the API server answers again after 0s"]
    UNAVAILABLE_NOTICES.set(None)
    FakeApiServer.calls, FakeApiServer.busy = [], 10  # busy past every try: its answer
    assert kube.call("GET", "/version") == (503, None)
    assert len(FakeApiServer.calls) == 5


def test_a_server_that_refuses_connections_is_tried_again_then_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("shipyard.adapters.kube_client.UNAVAILABLE_PAUSES", (0.05,) * 4)
    kubeconfig = tmp_path / "kubeconfig"
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "gone", "user": {"token": "t"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "gone"}}]}))
    started = time.monotonic()
    with pytest.raises(KubeUnreachable, match="GET /version"):
        KubeClient.from_kubeconfig(kubeconfig).call("GET", "/version")
    assert time.monotonic() - started >= 0.2  # four pauses: it was asked five times
