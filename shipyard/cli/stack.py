"""The local stack and its Prefect project: ``shipyard up``, ``down``, ``status``,
``deployments``, ``demo`` and ``version``.

The stack's parts are in :mod:`shipyard.stack`; these commands drive and show them.
"""

from __future__ import annotations

import json
import os
import platform
from typing import Annotated, cast

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from shipyard import __version__
from shipyard.adapters.git import head_commit
from shipyard.adapters.prefect import apply_deployments, check_project
from shipyard.cli import app
from shipyard.cli.context import settings, store, use_prefect
from shipyard.cli.errors import CommandFailed, console, err_console
from shipyard.cli.permissions import open_state_warnings, report_tightened
from shipyard.cli.pipelines import start_and_follow
from shipyard.cli.render import runs_table
from shipyard.domain.delivery_options import DeliveryOptions
from shipyard.stack.component import ComponentFailed
from shipyard.stack.kubernetes import NodeMode
from shipyard.stack.stack import COMPONENT_NAMES, LocalStack

__all__ = ["deployments", "down", "status", "up", "version"]

deployments = typer.Typer(help="The Prefect deployments of prefect.yaml.", no_args_is_help=True)
app.add_typer(deployments, name="deployments")


@app.command()
def version() -> None:
    """Print Shipyard's version."""
    import prefect

    console.print(f"shipyard {__version__} (prefect {prefect.__version__}, "
                  f"python {platform.python_version()})", highlight=False)


def _stack(only: list[str] | None = None, *, rebuild_base_image: bool = False,
           nodes: NodeMode = "auto") -> LocalStack:
    return LocalStack(settings(), only=tuple(only or ()),
                      rebuild_base_image=rebuild_base_image, nodes=nodes)


Only = Annotated[list[str] | None, typer.Option(
    "--only", help=f"Only this component (repeat): {', '.join(COMPONENT_NAMES)}.")]


@app.command()
def up(
    only: Only = None,
    rebuild_base_image: Annotated[bool, typer.Option(
        "--rebuild-base-image", help="Build the base image again from Debian.")] = False,
    nodes: Annotated[str, typer.Option(
        "--nodes", help="Cluster nodes: real (containerd + kubelet), kwok (simulated), or "
        "auto (real where the machine allows it).")] = "auto",
) -> None:
    """Bring the local stack up: what already works is left as it is (idempotent). Secret
    files and state directories others can reach are made private first, and said so."""
    if nodes not in ("auto", "real", "kwok"):
        raise typer.BadParameter(f"{nodes!r} is not one of auto, real, kwok",
                                 param_hint="--nodes")
    stack = _stack(only, rebuild_base_image=rebuild_base_image,
                   nodes=cast(NodeMode, nodes))
    report_tightened(stack.make_private())
    bars = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[component]}[/]"),
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)
    with bars:
        tasks: dict[str, TaskID] = {}

        def progress(component: str, line: str, done: int | None = None,
                     total: int | None = None) -> None:
            if component not in tasks:
                tasks[component] = bars.add_task(line, total=None, component=component)
            bars.update(tasks[component], description=line[:70], completed=done or 0,
                        total=total)

        try:
            results = stack.up(progress)
        except ComponentFailed as err:
            err_console.print(f"✘ {err.component}: {err.problem}", markup=False,
                              highlight=False)
            if err.log_tail:
                err_console.print(f"  last lines of {err.log_file}:", markup=False)
                for line in err.log_tail.splitlines():
                    err_console.print(f"    {line}", markup=False, highlight=False)
            raise CommandFailed(f"{err.component} did not start"
                                + (f": {err.fix}" if err.fix else "")) from err
    for result in results:
        mark = "[green]✔[/]" if result.changed else "[dim]=[/]"
        console.print(f"{mark} {result.name}: {result.message}")
    if not any(r.changed for r in results):
        console.print("Nothing to do: the stack was already up.")
    console.print(f"[green]✔[/] store {store().url}")


@app.command()
def down(
    only: Only = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the components' data "
                                        "(the Prefect database, images, cluster state).")]
    = False,
) -> None:
    """Stop what `shipyard up` started; data stays unless --purge."""
    for name, stopped in _stack(only).down(purge=purge):
        console.print(f"{name}: {'stopped' if stopped else 'was not running'}")


@app.command()
def status(
    only: Only = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show each component of the local stack: health, version, address. Exit 1 unless
    every component is healthy. Warns of secret files and state directories others can
    reach (without changing the exit status: scripts read it as the components' health)."""
    statuses = _stack(only).status()
    too_open = open_state_warnings(settings())
    if as_json:
        console.print_json(json.dumps({"components": [s.as_json() for s in statuses],
                                       "store": store().url, "permissions": too_open}))
    else:
        table = Table(title="Shipyard stack", title_justify="left")
        for column in ("COMPONENT", "HEALTH", "VERSION", "ADDRESS", "DETAIL"):
            table.add_column(column)
        for s in statuses:
            table.add_row(s.name, "✔ healthy" if s.healthy else "✘ down", s.version,
                          s.address, s.detail)
        table.add_row("store", "✔", "", store().url, "")
        console.print(table)
    if not all(s.healthy for s in statuses):
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
    specs = apply_deployments(settings().source_dir, work_pool=settings().work_pool,
                              pool_type=settings().worker_type)
    console.print(f"[green]✔[/] applied {', '.join(s.name for s in specs)}")


@app.command()
def demo(
    app_name: Annotated[str, typer.Option("--app", help="The app to release.")] = "discovery",
) -> None:
    """Bring the stack up and release an app of this checkout end to end: ci (checkout,
    tests, image build and push), staging, then red/black into production; then promote
    it again (a second red/black) and roll back to the first, at once while it is warm."""
    external = settings().kubeconfig or os.environ.get("KUBECONFIG")
    # A cluster named by the settings is used as it is: no local one is built or started.
    up(only=["docker", "registry", "base-image",
             *([] if external else ["k8s-binaries"]), "kubernetes", "postgres", "prefect"],
       nodes="real")
    source = settings().source_dir
    commit = head_commit(source)
    production = settings().production_environment
    before = settings().pre_production_environment
    console.rule(f"release {app_name} at {commit[:12]} → {' → '.join(settings().environments)}")
    start_and_follow("release", {"repo": str(source), "ref": commit, "apps": [app_name],
                                 "options": DeliveryOptions(
                                     warm_seconds=30, canary_window_seconds=30).as_parameter()},
                     repo_url=str(source), ref=commit,
                     app_name=app_name, wait=True, timeout=1800, actor=None, trigger="demo")
    if before is None:
        console.print(f"{production} is the first environment: nothing to promote from")
    else:
        console.rule(f"promote {app_name} {before} → {production} again (a second red/black)")
        start_and_follow("promote", {"app": app_name, "from_env": before, "to_env": production,
                                     "options": DeliveryOptions(
                                         why="demo", warm_seconds=0,
                                         canary_window_seconds=30).as_parameter()},
                         app_name=app_name, wait=True, timeout=900, actor=None,
                         trigger="demo")
    console.print(runs_table(store().list_runs(limit=6)))
