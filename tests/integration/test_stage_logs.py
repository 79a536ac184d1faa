"""A stage's log past the store's cap: every line is in the stage's log file, the store
keeps the first lines and a marker naming the file, and the file is the run's artifact.

The stage lifecycle (:func:`stages.runtime.run_stage`) runs here without Prefect, on
SQLite and on PostgreSQL, as the flows run it in a worker."""

from __future__ import annotations

import asyncio
import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import stages.runtime
from shipyard.domain.pipeline import StageSpec
from shipyard.store import Ledger, Store
from stages.runtime import RunContext, StageContext, StageFailure, StageResult, run_stage

pytestmark = pytest.mark.integration

CAP = 100
REF = "test:gateway"


class Logged(StageResult):
    lines: int


def numbered(start: int, stop: int) -> str:
    return "".join(f"line {n}\n" for n in range(start, stop))


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store_url: str) -> Iterator[Path]:
    """The flows' environment: a Shipyard home, the test's database, a cap of CAP."""
    home = tmp_path / "home"
    monkeypatch.setenv("SHIPYARD_HOME", str(home))
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", store_url)
    monkeypatch.setenv("SHIPYARD_STAGE_LOG_MAX_LINES", str(CAP))
    opened: dict[tuple[str, int], Store] = {}
    monkeypatch.setattr(stages.runtime, "_stores", opened)
    yield home
    for store in opened.values():
        store.close()


@pytest.fixture
def store(home: Path, store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    yield opened
    opened.close()


def log_file(home: Path, run_id: str) -> Path:
    return home / "logs" / run_id / "test%3Agateway.log"


def run_logging(run_id: str, lines: range, *, attempt: int = 1, retries: int = 0,
                fail: bool = False) -> None:
    async def body(ctx: StageContext) -> Logged:
        for n in lines:
            await ctx.log(f"line {n}")
        if fail:
            raise StageFailure("Flaky", f"attempt {ctx.attempt} fails on purpose")
        return Logged(lines=len(lines))

    asyncio.run(run_stage(RunContext(run_id), REF, Logged, body, attempt=attempt,
                          retries=retries))


def new_run(store: Store) -> str:
    return store.create_run("ci", [StageSpec(REF)], trigger="manual", app="gateway").id


def test_a_log_past_the_cap_is_whole_in_a_private_file_named_by_the_marker(
    home: Path, store: Store,
) -> None:
    run_id = new_run(store)

    run_logging(run_id, range(250))

    path = log_file(home, run_id)
    assert path.read_text() == numbered(0, 250)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    chunks = store.read_logs(run_id)
    assert "".join(c.text for c in chunks[:-1]) == numbered(0, CAP)
    assert chunks[-1].text == f"truncated: 150 lines dropped; the full log is in {path}\n"
    stage = store.get_run(run_id).stage(REF)
    assert (stage.log_lines, stage.log_lines_dropped) == (CAP, 150)


def test_the_full_log_is_an_artifact_of_the_run_with_its_digest(home: Path,
                                                                  store: Store) -> None:
    run_id = new_run(store)

    run_logging(run_id, range(250))

    path = log_file(home, run_id)
    [artifact] = Ledger(store).artifacts(run_id=run_id, kind="log")
    assert (artifact.stage_ref, artifact.app, artifact.name) == (REF, "gateway", str(path))
    assert artifact.digest == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert Ledger(store).artifacts(app="gateway", kind="image") == []


def test_a_log_within_the_cap_is_in_the_store_alone(home: Path, store: Store) -> None:
    run_id = new_run(store)

    run_logging(run_id, range(CAP))

    assert "".join(c.text for c in store.read_logs(run_id)) == numbered(0, CAP)
    assert not (home / "logs" / run_id).exists()
    assert Ledger(store).artifacts(run_id=run_id) == []


def test_a_retried_stage_keeps_every_attempts_lines_in_its_file(home: Path,
                                                               store: Store) -> None:
    run_id = new_run(store)

    with pytest.raises(StageFailure):
        run_logging(run_id, range(150), attempt=1, retries=1, fail=True)
    run_logging(run_id, range(150, 160), attempt=2, retries=1)

    text = log_file(home, run_id).read_text()
    assert text == (numbered(0, 150) + "Flaky: attempt 1 fails on purpose\n"
                    "attempt 1 of 2 failed; retrying\n" + numbered(150, 160))
    assert store.get_run(run_id).stage(REF).log_lines_dropped == 62
    assert len(Ledger(store).artifacts(run_id=run_id, kind="log")) == 1
