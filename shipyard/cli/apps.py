"""``shipyard apps run | stop | status``: the bundled apps as local processes, for
development, wired through discovery (see :mod:`shipyard.stack.local_apps`)."""

from __future__ import annotations

import json
import signal
import threading
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table

from shipyard.cli import app
from shipyard.cli.context import settings
from shipyard.cli.errors import CommandFailed, console
from shipyard.stack.local_apps import LocalApps, LocalAppsFailed, LocalInstance, instance_counts
from stages.catalog import discover_apps, read_descriptor

__all__ = ["apps"]

apps = typer.Typer(help="The bundled apps as local processes, for development.",
                   no_args_is_help=True)
app.add_typer(apps, name="apps")


def _local_apps(instances: list[str] | None = None, *, free_ports: bool = False) -> LocalApps:
    root = settings().source_dir
    names = discover_apps(root)
    try:
        counts = instance_counts(instances or [], names)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--instances") from err
    return LocalApps(root / "apps", {n: read_descriptor(root, n) for n in names},
                     settings().home / "apps", counts, free_ports=free_ports)


def _table(instances: list[LocalInstance]) -> Table:
    table = Table(title="Local apps", title_justify="left")
    for column in ("INSTANCE", "URL", "STATE", "PID", "LOG"):
        table.add_column(column)
    for i in instances:
        pid = i.process.pid()
        table.add_row(i.name, i.url, "running" if pid else "stopped", str(pid or ""),
                      str(i.process.log_file))
    return table


@apps.command("run")
def run(
    instances: Annotated[list[str] | None, typer.Option(
        "--instances", help="How many instances of an app, as APP=N (repeat).")] = None,
    free_ports: Annotated[bool, typer.Option(
        "--free-ports", help="Pick free ports rather than the descriptors' own.")] = False,
    detach: Annotated[bool, typer.Option(
        "--detach", help="Leave them running and return; `shipyard apps stop` ends them.")]
    = False,
) -> None:
    """Start every app (discovery first, each ready before the next), then wait: Ctrl-C
    stops them all cleanly."""
    local = _local_apps(instances, free_ports=free_ports)
    try:
        started = local.start(lambda i: console.print(f"[green]✔[/] {i.name} ready at {i.url}"))
    except LocalAppsFailed as err:
        raise CommandFailed(str(err)) from err
    console.print(_table(started))
    if detach:
        return
    gateway = next((i.url for i in started if i.app == "gateway"), None)
    if gateway:
        console.print(f"Try: curl {gateway}/api/discovery/eureka/apps   (Ctrl-C stops all)")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    while not stop.wait(1):
        for instance in started:
            if not instance.running():
                console.print(f"[red]✘[/] {instance.name} exited; its log: "
                              f"{instance.process.log_file}")
                stop.set()
    _stop(local)


@apps.command("stop")
def stop_command() -> None:
    """Stop the local apps (each drains and deregisters first)."""
    _stop(_local_apps())


def _stop(local: LocalApps) -> None:
    for instance, stopped in local.stop():
        console.print(f"{instance.name}: {'stopped' if stopped else 'was not running'}")


@apps.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show each local app instance: URL, pid, log. Exit 1 unless all run."""
    planned = _local_apps().plan()
    if as_json:
        console.print_json(json.dumps([
            {"instance": i.name, "app": i.app, "url": i.url, "running": i.running(),
             "pid": i.process.pid(), "log": str(i.process.log_file)} for i in planned]))
    else:
        console.print(_table(planned))
    if not all(i.running() for i in planned):
        raise typer.Exit(1)
