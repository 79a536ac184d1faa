"""The CLI with no Prefect server: the run is recorded, refused cleanly, and says why."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipyard import __version__
from shipyard.domain.clock import FrozenClock
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import Ledger, RunNotFound, Store

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]


def shipyard(home: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHIPYARD_"))}
    # Port 1 on loopback: nothing listens there, so Prefect cannot be reached.
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_PREFECT_PORT="1", COLUMNS="200", **extra_env)
    return subprocess.run([sys.executable, "-m", "shipyard.cli", *args], env=env, cwd=PROJECT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_version_and_help(tmp_path: Path):
    version = shipyard(tmp_path, "version")
    assert version.returncode == 0 and version.stdout.startswith(f"shipyard {__version__} ")
    helped = shipyard(tmp_path, "--help")
    assert helped.returncode == 0
    for command in ("runs", "show", "ci", "release", "promote", "rollback", "up", "demo", "gc"):
        assert command in helped.stdout


def test_a_run_prefect_cannot_take_is_cancelled_with_the_reason(tmp_path: Path):
    done = shipyard(tmp_path, "ci", "--repo", str(PROJECT), "--app", "discovery")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: Prefect did not take ci run ")
    assert "`shipyard up`" in lines[0]
    store = Store.open(f"sqlite:///{tmp_path / 'shipyard.db'}")
    [run] = store.list_runs()
    assert run.state is State.CANCELLED and run.reason == "HandOverFailed"
    assert run.parameters["apps"] == ["discovery"]  # what was asked is kept


def test_status_says_the_server_is_down_and_fails(tmp_path: Path):
    done = shipyard(tmp_path, "status")
    assert done.returncode == 1
    assert "✘ down" in done.stdout


def test_an_invalid_database_url_is_one_clear_line_without_the_password(tmp_path: Path):
    done = shipyard(tmp_path, "runs",
                    SHIPYARD_DATABASE_URL="postgresql://user:secret@127.0.0.1:notaport/db")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: database URL ")
    assert "secret" not in done.stderr
    assert not (tmp_path / "shipyard.db").exists()


def test_gc_deletes_old_runs_with_their_log_files_and_keeps_what_a_release_names(
    tmp_path: Path,
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'shipyard.db'}",
                       clock=FrozenClock(datetime(2020, 1, 1, tzinfo=UTC)))
    gone, released = (store.create_run("ci", [StageSpec("checkout")], trigger="manual",
                                       app="gateway").id for _ in range(2))
    for run_id in (gone, released):
        store.cancel_run(run_id, reason="Cancelled", message="long ago")
    Ledger(store).record_release(app="gateway", version="1", environment="prod",
                                 kind="deploy", digest="sha256:" + "a" * 64, actor="ada",
                                 why="ship it", run_id=released)
    logs = tmp_path / "logs" / gone
    logs.mkdir(parents=True)
    (logs / "checkout.log").write_text("every line\n")

    dry = shipyard(tmp_path, "gc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete" in dry.stdout
    assert re.search(r"│ runs\s+│ 1 ", dry.stdout) and "Dry run: nothing was deleted" in dry.stdout
    assert store.get_run(gone) and logs.exists()

    done = shipyard(tmp_path, "gc")
    assert done.returncode == 0, done.stderr
    assert re.search(r"│ runs\s+│ 1 ", done.stdout)
    assert re.search(r"│ stage log directories\s+│ 1 ", done.stdout)
    assert "Kept 1 run(s)" in done.stdout
    with pytest.raises(RunNotFound):
        store.get_run(gone)
    assert store.get_run(released).id == released
    assert not logs.exists()
    store.close()


@pytest.mark.parametrize(("flag", "value", "example"), [
    ("--runs-days", "0", "--runs-days 90"),
    ("--deliveries-days", "40000", "--deliveries-days 30"),
])
def test_gc_refuses_a_retention_out_of_range_naming_the_flag_and_the_fix(
    tmp_path: Path, flag: str, value: str, example: str,
) -> None:
    done = shipyard(tmp_path, "gc", flag, value)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: Invalid value for '{flag}': {value} days is out of range")
    assert f"such as {example}" in line
