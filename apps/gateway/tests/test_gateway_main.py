"""`python -m gateway` as a process: servicekit's serve, JSON logs, clean exits."""

from __future__ import annotations

from pathlib import Path

import httpx
from servicekit.testing import module_process, run_module

APP_DIR = Path(__file__).resolve().parents[1]


def test_it_serves_without_discovery_logs_json_and_exits_0_on_sigterm() -> None:
    # DISCOVERY_URL empty means unset: the default, a discovery on this host, not running.
    env = {"APP_VERSION": "2.0.1", "DISCOVERY_URL": ""}
    with module_process("gateway", APP_DIR, env, ready_path="/version") as process:
        version = httpx.get(f"{process.base_url}/version").json()
        readiness = httpx.get(f"{process.base_url}/readyz")
        unknown = httpx.get(f"{process.base_url}/api/data/items")
        status = process.terminate()
    assert version == {"app": "gateway", "version": "2.0.1"}
    assert readiness.status_code == 503 and "discovery" in readiness.json()["failed"]
    assert unknown.status_code == 503
    assert status == 0
    entries = process.log_entries()
    assert {(e["app"], e["version"]) for e in entries} == {("gateway", "2.0.1")}
    assert any("127.0.0.1:8761" in e["message"] for e in entries), "the default discovery"


def test_a_bad_setting_exits_2_naming_it() -> None:
    finished = run_module("gateway", APP_DIR, {"GATEWAY_RETRIES": "-5"})
    assert finished.returncode == 2
    assert "GATEWAY_RETRIES='-5' is invalid" in finished.stderr
