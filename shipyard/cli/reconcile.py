"""``shipyard reconcile``: the run sweeper by hand (see :mod:`pipelines.sweeper`).

Settles every unfinished run whose process is gone, as ``shipyard ui`` does on its own
every ``SHIPYARD_SWEEP_INTERVAL_SECONDS``, and prints what it found; ``--dry-run`` only
prints. When Prefect cannot be asked it settles nothing and exits 1.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from pipelines.drift import DriftReport
from pipelines.sweeper import Sweeper
from shipyard.cli import app
from shipyard.cli.context import settings, store, use_prefect
from shipyard.cli.errors import CommandFailed, console

__all__ = ["reconcile"]


@app.command()
def reconcile(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say which runs lost their process; change nothing.")] = False,
) -> None:
    """Settle every unfinished run whose process is gone (failed with reason Abandoned and
    the evidence, its deploy locks given back, its Prefect flow run marked crashed), then
    repair the ledger to what the cluster serves."""
    use_prefect()
    sweeper = Sweeper.from_settings(store(), settings())
    report = asyncio.run(sweeper.sweep_once(dry_run=dry_run))
    if report.unavailable:
        raise CommandFailed(f"{report.unavailable}; nothing was settled (`shipyard up` "
                            "starts Prefect)")
    if report.drift is not None:
        _print_drift(report.drift, dry_run)
    if not report.abandoned:
        console.print(f"{report.checked} unfinished run(s) checked: every one still has "
                      "its process")
        return
    table = Table("run", "pipeline", "app", "was", "evidence",
                  title="would settle as abandoned" if dry_run else "settled as abandoned")
    for found in report.abandoned:
        settled = dry_run or found.run_id in report.settled
        table.add_row(found.run_id[:8], found.pipeline, found.app or "-",
                      found.state if settled else f"{found.state} (ended meanwhile)",
                      found.evidence)
    console.print(table)
    console.print(f"{report.checked} unfinished run(s) checked; "
                  + (f"{len(report.abandoned)} would be settled (dry run: nothing changed)"
                     if dry_run else f"{len(report.settled)} settled"))


def _print_drift(drift: DriftReport, dry_run: bool) -> None:
    """What the ledger's reconciliation found (see :mod:`pipelines.drift`)."""
    if drift.unavailable:
        console.print(f"[yellow]ledger not reconciled: {drift.unavailable}[/]")
        return
    for where, why in drift.skipped.items():
        console.print(f"ledger: {where} skipped: {why}")
    if not drift.found:
        console.print(f"ledger: {drift.checked} app(s) checked: the ledger names what the "
                      "cluster serves")
        return
    table = Table("app", "environment", "action", "release", "drift",
                  title="ledger drift (dry run: nothing recorded)" if dry_run
                  else "ledger drift")
    for found in drift.found:
        table.add_row(found.app, found.environment, found.action,
                      f"#{found.release_id}" if found.release_id else "-", found.message)
    console.print(table)
