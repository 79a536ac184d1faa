"""`python -m data` as a process: servicekit's serve, the default database file, JSON
logs, clean exits."""

from __future__ import annotations

from pathlib import Path

import httpx
from servicekit.testing import module_process, run_module

APP_DIR = Path(__file__).resolve().parents[1]
# Nothing listens there: registration fails quietly, as discovery outages must.
NO_DISCOVERY = {"DISCOVERY_URL": "http://127.0.0.1:9"}


def test_it_serves_from_data_db_in_its_directory_and_exits_0_on_sigterm(
        tmp_path: Path) -> None:
    with module_process("data", APP_DIR, {**NO_DISCOVERY, "APP_VERSION": "3.1.0"},
                        cwd=tmp_path) as process:
        written = httpx.post(f"{process.base_url}/activities",
                             json={"user_id": "u1", "content_id": "c1"})
        status = process.terminate()
    assert written.status_code == 201
    assert (tmp_path / "data.db").exists()
    assert status == 0
    entries = process.log_entries()
    assert {(e["app"], e["version"]) for e in entries} == {("data", "3.1.0")}


def test_a_bad_setting_exits_2_naming_it(tmp_path: Path) -> None:
    finished = run_module("data", APP_DIR, {**NO_DISCOVERY, "CACHE_MAX_ENTRIES": "-5"},
                          cwd=tmp_path)
    assert finished.returncode == 2
    assert "CACHE_MAX_ENTRIES='-5' is invalid" in finished.stderr
