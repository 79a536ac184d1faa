"""``shipyard history APP``: an app's releases per environment, newest first, with who
and why — the deploys, promotions and rollbacks the ledger recorded."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from shipyard.cli import app
from shipyard.cli.context import store
from shipyard.cli.errors import console
from shipyard.domain.catalog import validate_app_name
from shipyard.store import Ledger

__all__ = ["history"]


@app.command()
def history(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    env: Annotated[str | None, typer.Option("--env", help="Only this environment.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    manifests: Annotated[bool, typer.Option(
        "--manifests", help="Also print the newest release's recorded manifests.")] = False,
) -> None:
    """List APP's releases per environment, newest first."""
    validate_app_name(app_name)
    releases = Ledger(store()).releases(app_name, env, limit=limit)
    if not releases:
        where = f" in {env}" if env else ""
        console.print(f"{app_name} has no release{where} yet.")
        return
    table = Table("#", "environment", "version", "slot", "kind", "when", "who", "why",
                  "run", title=f"{app_name} releases", title_justify="left")
    for release in releases:
        source = f" ← #{release.source_release_id}" if release.source_release_id else ""
        table.add_row(str(release.id), release.environment, release.version,
                      release.slot or "-", release.kind + source,
                      release.created_at.strftime("%Y-%m-%d %H:%M:%S"), release.actor,
                      release.why, (release.run_id or "")[:8])
    console.print(table)
    if manifests:
        console.rule(f"release #{releases[0].id} manifests", align="left")
        console.out(releases[0].manifests, highlight=False)
