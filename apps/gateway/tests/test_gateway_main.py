"""`python -m gateway` as a process: servicekit's serve, JSON logs, clean exits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

APP_DIR = Path(__file__).resolve().parents[1]
PYTHONPATH = os.pathsep.join([str(APP_DIR), str(APP_DIR.parent / "servicekit")])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(**env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gateway"],
                            env={**os.environ, "PYTHONPATH": PYTHONPATH, **env},
                            stderr=subprocess.PIPE, text=True)


def test_it_serves_without_discovery_logs_json_and_exits_0_on_sigterm() -> None:
    port = free_port()
    # DISCOVERY_URL empty means unset: the default, a discovery on this host, not running.
    process = start(HOST="127.0.0.1", PORT=str(port), DRAIN_SECONDS="0", APP_VERSION="2.0.1",
                    DISCOVERY_URL="")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                version = httpx.get(f"http://127.0.0.1:{port}/version").json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "not serving"
                time.sleep(0.02)
        readiness = httpx.get(f"http://127.0.0.1:{port}/readyz")
        unknown = httpx.get(f"http://127.0.0.1:{port}/api/data/items")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert version == {"app": "gateway", "version": "2.0.1"}
    assert readiness.status_code == 503 and "discovery" in readiness.json()["failed"]
    assert unknown.status_code == 503
    assert process.returncode == 0
    entries = [json.loads(line) for line in stderr.splitlines()]
    assert {(e["app"], e["version"]) for e in entries} == {("gateway", "2.0.1")}
    assert any("127.0.0.1:8761" in e["message"] for e in entries), "the default discovery"


def test_a_bad_setting_exits_2_naming_it() -> None:
    process = start(GATEWAY_RETRIES="-5")
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 2
    assert "GATEWAY_RETRIES='-5' is invalid" in stderr
