"""`python -m data` as a process: servicekit's serve, the default database file, JSON
logs, clean exits."""

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


def start(cwd: Path, **env: str) -> subprocess.Popen[str]:
    inherited = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.Popen([sys.executable, "-m", "data"], cwd=cwd,
                            env={**inherited, "PYTHONPATH": PYTHONPATH,
                                 "DISCOVERY_URL": "http://127.0.0.1:9", **env},
                            stderr=subprocess.PIPE, text=True)


def test_it_serves_from_data_db_in_its_directory_and_exits_0_on_sigterm(
        tmp_path: Path) -> None:
    port = free_port()
    process = start(tmp_path, HOST="127.0.0.1", PORT=str(port), DRAIN_SECONDS="0",
                    APP_VERSION="3.1.0")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "not serving"
            time.sleep(0.05)
        written = httpx.post(f"http://127.0.0.1:{port}/activities",
                             json={"user_id": "u1", "content_id": "c1"})
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert written.status_code == 201
    assert (tmp_path / "data.db").exists()
    assert process.returncode == 0
    entries = [json.loads(line) for line in stderr.splitlines()]
    assert {(e["app"], e["version"]) for e in entries} == {("data", "3.1.0")}


def test_a_bad_setting_exits_2_naming_it(tmp_path: Path) -> None:
    process = start(tmp_path, CACHE_MAX_ENTRIES="-5")
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 2
    assert "CACHE_MAX_ENTRIES='-5' is invalid" in stderr
