"""`python -m streaming` as a process: servicekit's serve, JSON logs, clean exits, and
every record answered 200 still there after the process is killed (SIGKILL)."""

from __future__ import annotations

from pathlib import Path

import httpx
from servicekit.testing import free_port, module_process, run_module

APP_DIR = Path(__file__).resolve().parents[1]
# Nothing listens there: registration fails quietly, as discovery outages must.
NO_DISCOVERY = {"DISCOVERY_URL": "http://127.0.0.1:9"}


def test_it_serves_logs_json_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    with module_process("streaming", APP_DIR, {**NO_DISCOVERY, "APP_VERSION": "3.1.0"},
                        cwd=tmp_path) as process:
        version = httpx.get(f"{process.base_url}/version").json()
        status = process.terminate()
    assert version == {"app": "streaming", "version": "3.1.0"}
    assert status == 0
    entries = process.log_entries()
    assert {(e["app"], e["version"]) for e in entries} == {("streaming", "3.1.0")}
    assert (tmp_path / "streaming-data" / "topics" / "views").is_dir(), "DATA_DIR default"


def test_records_and_commits_answered_200_survive_a_sigkill(tmp_path: Path) -> None:
    env = {**NO_DISCOVERY, "DATA_DIR": str(tmp_path / "data")}
    port = free_port()  # the same for both lives of the process
    with module_process("streaming", APP_DIR, env, port, cwd=tmp_path) as process, \
            httpx.Client(base_url=process.base_url) as http:
        http.post("/topics", json={"name": "orders", "partitions": 2}).raise_for_status()
        answered = [http.post("/topics/orders/records", json={
            "records": [{"key": f"k{n}", "value": n}]}).json()["offsets"][0]
            for n in range(30)]
        http.post("/groups/g/offsets", json={
            "topic": "orders", "offsets": [{"partition": 1, "offset": 1}]}
        ).raise_for_status()
        process.kill()
    with module_process("streaming", APP_DIR, env, port, cwd=tmp_path) as process, \
            httpx.Client(base_url=process.base_url) as http:
        found = {(p, r["offset"]): r["value"] for p in (0, 1) for r in http.get(
            f"/topics/orders/partitions/{p}/records", params={"max": 100}
        ).json()["records"]}
        committed = http.get("/groups/g/offsets", params={"topic": "orders"}).json()
    assert found == {(a["partition"], a["offset"]): n for n, a in enumerate(answered)}
    assert committed["offsets"][1]["committed"] == 1


def test_a_bad_setting_exits_2_naming_it(tmp_path: Path) -> None:
    finished = run_module("streaming", APP_DIR, {**NO_DISCOVERY, "FSYNC_POLICY": "sometimes"},
                          cwd=tmp_path)
    assert finished.returncode == 2
    assert "FSYNC_POLICY='sometimes' is invalid" in finished.stderr
