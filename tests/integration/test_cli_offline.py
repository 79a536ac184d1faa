"""The CLI with no Prefect server: the run is recorded, refused cleanly, and says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard import __version__
from shipyard.domain.states import State
from shipyard.store import Store

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
    for command in ("runs", "show", "ci", "release", "promote", "rollback", "up", "demo"):
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
