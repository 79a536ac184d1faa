"""``shipyard gc``: delete what is past its retention: runs that ended long ago (with
their stages, logs, history and stage log files) and old webhook deliveries. What the
release history and DORA still need stays (:mod:`shipyard.store.retention`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from shipyard.adapters.stage_log_files import existing_run_logs, remove_run_logs
from shipyard.cli import app
from shipyard.cli.context import settings, store
from shipyard.cli.errors import console
from shipyard.store import Retention, RetentionReport

__all__ = ["gc"]

MAX_DAYS = 36_500


def _days(flag: str, variable: str, example: int) -> Callable[[int | None], int | None]:
    def check(value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_DAYS:
            raise typer.BadParameter(
                f"{value} days is out of range: give a whole number of days from 1 to "
                f"{MAX_DAYS}, such as {flag} {example}, or leave {flag} out to use "
                f"{variable}")
        return value

    return check


@app.command()
def gc(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Count what would be deleted; delete nothing.")] = False,
    runs_days: Annotated[int | None, typer.Option(
        "--runs-days", metavar="N", callback=_days("--runs-days", "SHIPYARD_RETAIN_RUNS_DAYS", 90),
        help="Delete runs that ended more than N days ago "
        "[default: SHIPYARD_RETAIN_RUNS_DAYS, else 90].")] = None,
    deliveries_days: Annotated[int | None, typer.Option(
        "--deliveries-days", metavar="N",
        callback=_days("--deliveries-days", "SHIPYARD_RETAIN_DELIVERIES_DAYS", 30),
        help="Delete webhook deliveries received more than N days ago "
        "[default: SHIPYARD_RETAIN_DELIVERIES_DAYS, else 30].")] = None,
) -> None:
    """Delete runs and webhook deliveries past their retention, and the runs' stage log
    files. Runs a release names, that built a released image, that hold a deploy lock or
    that a kept run restarted from stay, as do runs not yet ended."""
    config = settings()
    runs_days = runs_days or config.retain_runs_days
    deliveries_days = deliveries_days or config.retain_deliveries_days
    runs_store = store()
    now = runs_store.clock()
    runs_before = now - timedelta(days=runs_days)
    deliveries_before = now - timedelta(days=deliveries_days)
    log_dirs = 0

    def forget_logs(run_ids: Sequence[str]) -> None:
        nonlocal log_dirs
        log_dirs += (len(existing_run_logs(config.stage_logs_dir, run_ids)) if dry_run
                     else remove_run_logs(config.stage_logs_dir, run_ids))

    report = Retention(runs_store).delete_expired(
        runs_before=runs_before, deliveries_before=deliveries_before, dry_run=dry_run,
        on_runs=forget_logs)
    console.print(f"Runs that ended before {runs_before:%Y-%m-%d %H:%M} UTC ({runs_days} "
                  f"days) and webhook deliveries received before "
                  f"{deliveries_before:%Y-%m-%d %H:%M} UTC ({deliveries_days} days):",
                  highlight=False)
    console.print(report_table(report, log_dirs))
    if report.kept_runs:
        console.print(f"Kept {report.kept_runs} run(s) that ended before then: a release "
                      "or a deploy lock names them, they built a released image, or a run "
                      "that stays was restarted from them.", highlight=False)
    if dry_run:
        console.print("Dry run: nothing was deleted. Run `shipyard gc` without --dry-run "
                      "to delete it.", highlight=False)


def report_table(report: RetentionReport, log_dirs: int) -> Table:
    """What a sweep deleted, or would delete, one row per kind of record."""
    table = Table("", "would delete" if report.dry_run else "deleted", title_justify="left")
    for what, count in (("runs", report.runs), ("stages", report.stages),
                        ("log chunks", report.log_chunks),
                        ("state transitions", report.transitions),
                        ("approvals", report.approvals), ("artifacts", report.artifacts),
                        ("webhook deliveries", report.deliveries),
                        ("stage log directories", log_dirs)):
        table.add_row(what, str(count))
    return table
