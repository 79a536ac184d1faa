"""The local stack and its Prefect project: ``shipyard up``, ``down``, ``status``,
``deployments``, ``demo`` and ``version``.

Today the stack is the Prefect server, the ``shipyard`` work pool with its deployments,
and a process worker; the Docker engine, registry and Kubernetes cluster join it later.
"""

from __future__ import annotations

import platform
from typing import Annotated

import typer
from rich.table import Table

from shipyard import __version__
from shipyard.adapters.git import head_commit
from shipyard.adapters.prefect import apply_deployments, check_project
from shipyard.adapters.prefect_server import PrefectWorker
from shipyard.cli import app
from shipyard.cli.context import prefect_server, settings, store, use_prefect
from shipyard.cli.errors import console
from shipyard.cli.pipelines import start_and_follow
from shipyard.cli.render import runs_table

__all__ = ["deployments", "down", "status", "up", "version"]

deployments = typer.Typer(help="The Prefect deployments of prefect.yaml.", no_args_is_help=True)
app.add_typer(deployments, name="deployments")


@app.command()
def version() -> None:
    """Print Shipyard's version."""
    import prefect

    console.print(f"shipyard {__version__} (prefect {prefect.__version__}, "
                  f"python {platform.python_version()})", highlight=False)


def _worker() -> PrefectWorker:
    config = settings()
    env = [("SHIPYARD_HOME", str(config.home))]
    if config.database_url:
        env.append(("SHIPYARD_DATABASE_URL", config.database_url))
    return PrefectWorker(prefect_server(), config.work_pool, config.source_dir, tuple(env))


@app.command()
def up() -> None:
    """Start the Prefect server, apply the deployments and start a worker (idempotent)."""
    server = prefect_server()
    with console.status("Starting the Prefect server…"):
        started = server.start()
    console.print(f"[green]✔[/] Prefect server {'started' if started else 'already up'} at "
                  f"{server.api_url}")
    use_prefect()
    with console.status("Applying the deployments of prefect.yaml…"):
        specs = apply_deployments(settings().source_dir, work_pool=settings().work_pool)
    console.print(f"[green]✔[/] {len(specs)} deployments applied on work pool "
                  f"{settings().work_pool!r}: {', '.join(s.name for s in specs)}")
    worker = _worker()
    started = worker.start()
    console.print(f"[green]✔[/] worker {'started' if started else 'already running'} "
                  f"(log {worker.log_file})")
    console.print(f"[green]✔[/] store {store().url}")


@app.command()
def down() -> None:
    """Stop the worker and the Prefect server (the store and Prefect's history stay)."""
    stopped_worker = _worker().stop()
    stopped_server = prefect_server().stop()
    console.print(f"worker {'stopped' if stopped_worker else 'was not running'}; "
                  f"Prefect server {'stopped' if stopped_server else 'was not running'}")


@app.command()
def status() -> None:
    """Say what of the local stack runs."""
    server = prefect_server()
    table = Table(title="Shipyard stack", title_justify="left")
    for column in ("COMPONENT", "STATE", "WHERE"):
        table.add_column(column)
    healthy = server.healthy()
    table.add_row("prefect server", "✔ up" if healthy else "✘ down", server.api_url)
    worker = _worker()
    table.add_row("worker", "✔ running" if worker.running() else "✘ stopped",
                  str(worker.log_file))
    table.add_row("store", "✔", store().url)
    console.print(table)
    if not healthy:
        raise typer.Exit(1)


@deployments.command("check")
def deployments_check() -> None:
    """Validate prefect.yaml without deploying anything."""
    specs = check_project(settings().source_dir, work_pool=settings().work_pool)
    for spec in specs:
        console.print(f"[green]✔[/] {spec.name:9} {spec.entrypoint}  (pool {spec.work_pool})")


@deployments.command("apply")
def deployments_apply() -> None:
    """Validate prefect.yaml, then register its deployments with the Prefect server."""
    use_prefect()
    specs = apply_deployments(settings().source_dir, work_pool=settings().work_pool)
    console.print(f"[green]✔[/] applied {', '.join(s.name for s in specs)}")


@app.command()
def demo(
    app_name: Annotated[str, typer.Option("--app", help="The app to release.")] = "discovery",
) -> None:
    """Bring the stack up and release an app of this checkout end to end: ci (checkout and
    tests), cd into staging, then a promote to prod."""
    up()
    source = settings().source_dir
    commit = head_commit(source)
    console.rule(f"release {app_name} at {commit[:12]} → staging")
    start_and_follow("release", {"repo": str(source), "ref": commit, "apps": [app_name],
                                 "environment": "staging"}, repo_url=str(source), ref=commit,
                     app_name=app_name, wait=True, timeout=1800, actor=None, trigger="demo")
    console.rule(f"promote {app_name} staging → prod")
    start_and_follow("promote", {"app": app_name, "from_env": "staging", "to_env": "prod",
                                 "why": "demo"}, app_name=app_name, wait=True, timeout=600,
                     actor=None, trigger="demo")
    console.print(runs_table(store().list_runs(limit=6)))
