"""`python -m discovery` as a process: servicekit's serve, JSON logs, clean exits."""

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
    return subprocess.Popen([sys.executable, "-m", "discovery"],
                            env={**os.environ, "PYTHONPATH": PYTHONPATH, **env},
                            stderr=subprocess.PIPE, text=True)


def test_it_serves_logs_json_and_exits_0_on_sigterm() -> None:
    port = free_port()
    process = start(HOST="127.0.0.1", PORT=str(port), DRAIN_SECONDS="0", APP_VERSION="3.1.0")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                version = httpx.get(f"http://127.0.0.1:{port}/version").json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "not serving"
                time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert version == {"app": "discovery", "version": "3.1.0"}
    assert process.returncode == 0
    entries = [json.loads(line) for line in stderr.splitlines()]
    assert {(e["app"], e["version"]) for e in entries} == {("discovery", "3.1.0")}


def test_a_bad_setting_exits_2_naming_it() -> None:
    process = start(LEASE_SECONDS="-5")
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 2
    assert "LEASE_SECONDS='-5' is invalid" in stderr
