"""The Docker engine's deadlines, against a fake engine on loopback that answers only what
a test needs: a silent engine is an error naming the call and the deadline, and an
abandoned build stops reading its stream (so the engine sees the connection close).
The real engine is exercised in tests/integration (test_app_images, test_test_isolation)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.docker_engine import DockerEngine, EngineError


class FakeEngine(BaseHTTPRequestHandler):
    """Answers the API version; stays silent on every other call, except a build, which
    streams a line every 50 ms until the client goes away."""

    protocol_version = "HTTP/1.1"
    hung_up = threading.Event()

    def do_GET(self) -> None:
        if self.path.endswith("/version"):
            body = json.dumps({"ApiVersion": "1.43", "Version": "fake"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        time.sleep(5)  # silent

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if "/build" not in self.path:
            time.sleep(5)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for step in range(200):
                line = json.dumps({"stream": f"step {step}\n"}).encode() + b"\r\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            type(self).hung_up.set()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def fake_engine() -> Iterator[str]:
    FakeEngine.hung_up = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEngine)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_call_the_engine_does_not_answer_names_the_call_and_the_deadline(fake_engine: str):
    engine = DockerEngine(fake_engine, timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(EngineError, match=r"did not answer inspecting shop:1 within 1 s"):
        engine.image_id("shop:1")
    assert time.monotonic() - started < 4


def test_an_abandoned_build_stops_reading_and_hangs_up(fake_engine: str, tmp_path: Path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    engine = DockerEngine(fake_engine)
    lines: list[str] = []

    def build() -> None:
        for line in engine.build(tmp_path, "shop:1"):
            lines.append(line)

    async def stage() -> None:
        async with asyncio.timeout(0.5):
            await run_blocking(build)

    with pytest.raises(TimeoutError):
        asyncio.run(stage())
    seen = len(lines)
    assert seen > 0
    assert FakeEngine.hung_up.wait(5), "the engine still streams to nobody"
    assert len(lines) == seen
