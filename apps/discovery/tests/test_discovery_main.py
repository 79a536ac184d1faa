"""`python -m discovery` as a process: servicekit's serve, JSON logs, clean exits."""

from __future__ import annotations

from pathlib import Path

import httpx
from servicekit.testing import module_process, run_module

APP_DIR = Path(__file__).resolve().parents[1]


def test_it_serves_logs_json_and_exits_0_on_sigterm() -> None:
    with module_process("discovery", APP_DIR, {"APP_VERSION": "3.1.0"},
                        ready_path="/version") as process:
        version = httpx.get(f"{process.base_url}/version").json()
        status = process.terminate()
    assert version == {"app": "discovery", "version": "3.1.0"}
    assert status == 0
    entries = process.log_entries()
    assert {(e["app"], e["version"]) for e in entries} == {("discovery", "3.1.0")}


def test_a_bad_setting_exits_2_naming_it() -> None:
    finished = run_module("discovery", APP_DIR, {"LEASE_SECONDS": "-5"})
    assert finished.returncode == 2
    assert "LEASE_SECONDS='-5' is invalid" in finished.stderr
