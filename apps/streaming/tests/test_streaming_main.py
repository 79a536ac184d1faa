"""`python -m streaming` as a process: servicekit's serve, JSON logs, clean exits, and
every record answered 200 still there after the process is killed (SIGKILL)."""

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
    return subprocess.Popen([sys.executable, "-m", "streaming"], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": PYTHONPATH, "HOST": "127.0.0.1",
                                 "DRAIN_SECONDS": "0", "DISCOVERY_URL": "http://127.0.0.1:9",
                                 **env},
                            stderr=subprocess.PIPE, text=True)


def wait_ready(process: subprocess.Popen[str], base: str) -> None:
    base = base.rstrip("/")
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, "not ready"
        time.sleep(0.05)


def test_it_serves_logs_json_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = start(tmp_path, PORT=str(port), APP_VERSION="3.1.0")
    try:
        wait_ready(process, f"http://127.0.0.1:{port}")
        version = httpx.get(f"http://127.0.0.1:{port}/version").json()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert version == {"app": "streaming", "version": "3.1.0"}
    assert process.returncode == 0
    entries = [json.loads(line) for line in stderr.splitlines()]
    assert {(e["app"], e["version"]) for e in entries} == {("streaming", "3.1.0")}
    assert (tmp_path / "streaming-data" / "topics" / "views").is_dir(), "DATA_DIR default"


def test_records_and_commits_answered_200_survive_a_sigkill(tmp_path: Path) -> None:
    port = free_port()
    env = {"PORT": str(port), "DATA_DIR": str(tmp_path / "data")}
    process = start(tmp_path, **env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            wait_ready(process, str(http.base_url))
            http.post("/topics", json={"name": "orders", "partitions": 2}).raise_for_status()
            answered = [http.post("/topics/orders/records", json={
                "records": [{"key": f"k{n}", "value": n}]}).json()["offsets"][0]
                for n in range(30)]
            http.post("/groups/g/offsets", json={
                "topic": "orders", "offsets": [{"partition": 1, "offset": 1}]}
            ).raise_for_status()
            process.kill()
            process.communicate(timeout=20)
            process = start(tmp_path, **env)
            wait_ready(process, str(http.base_url))
            found = {(p, r["offset"]): r["value"] for p in (0, 1) for r in http.get(
                f"/topics/orders/partitions/{p}/records", params={"max": 100}
            ).json()["records"]}
            committed = http.get("/groups/g/offsets", params={"topic": "orders"}).json()
    finally:
        process.kill()
        process.communicate(timeout=20)
    assert found == {(a["partition"], a["offset"]): n for n, a in enumerate(answered)}
    assert committed["offsets"][1]["committed"] == 1


def test_a_bad_setting_exits_2_naming_it(tmp_path: Path) -> None:
    process = start(tmp_path, FSYNC_POLICY="sometimes")
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 2
    assert "FSYNC_POLICY='sometimes' is invalid" in stderr
