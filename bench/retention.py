"""What ``shipyard gc`` costs: a dry run and a real one over many old runs.

    .venv/bin/python bench/retention.py [--runs 20000] [--database-url URL]

Fills a fresh SQLite store (or the empty database at --database-url) with --runs runs
that ended a year ago, each with two stages, three log chunks of 50 lines per stage and
five transitions, as the store's own INSERTs write them; then times
``Retention.delete_expired`` counting (``dry_run``) and deleting, and prints both reports.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from shipyard.store import Retention, Store
from shipyard.store.models import PipelineRun, StageLog, StageRun, StateTransition


def fill(store: Store, runs: int) -> None:
    start = datetime.now(UTC) - timedelta(days=365)
    rows: dict[Any, list[dict[str, Any]]] = {PipelineRun: [], StageRun: [], StageLog: [],
                                             StateTransition: []}
    stage_id = 0
    for n in range(runs):
        run_id, at = uuid.uuid4().hex, start + timedelta(seconds=n)
        rows[PipelineRun].append({
            "id": run_id, "pipeline": "ci", "app": "gateway", "trigger": "push", "actor": "",
            "parameters": {}, "state": "succeeded", "reason": "Succeeded", "message": "",
            "created_at": at, "started_at": at, "finished_at": at})
        for position, ref in enumerate(("checkout", "build")):
            stage_id += 1
            rows[StageRun].append({
                "id": stage_id, "run_id": run_id, "ref": ref, "name": "",
                "position": position, "requires": [], "state": "succeeded",
                "reason": "Succeeded", "message": "", "attempts": 1, "outputs": {}})
            rows[StageLog].extend({"stage_run_id": stage_id, "at": at, "stream": "stdout",
                                   "text": "a line of output\n" * 50} for _ in range(3))
        rows[StateTransition].extend({
            "run_id": run_id, "stage_ref": "", "from_state": None, "to_state": "queued",
            "reason": "Created", "message": "", "at": at} for _ in range(5))
    with store.engine.begin() as connection:
        for model, values in rows.items():
            connection.execute(insert(model), values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        store = Store.open(args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}")
        fill(store, args.runs)
        now = datetime.now(UTC)
        for dry_run in (True, False):
            began = time.perf_counter()
            report = Retention(store).delete_expired(
                runs_before=now - timedelta(days=90), deliveries_before=now - timedelta(days=30),
                dry_run=dry_run)
            print(f"{'dry run' if dry_run else 'deleted'}: {time.perf_counter() - began:.2f}s "
                  f"{report}")
        store.close()


if __name__ == "__main__":
    main()
