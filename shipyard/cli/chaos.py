"""``shipyard chaos run``: a Chaos Toolkit experiment against an app in an environment, by
hand, as the chaos gate runs it (the same configuration keys, validation and report), on
the app as it is deployed (not scaled for the experiment).

Each step is a line as it happens, then the verdict and the journal's summary: the
hypothesis before and after (each probe against its tolerance), the method and the
rollbacks. Exit 0 when the experiment passed, 1 when it deviated, was aborted or a
rollback failed, 2 for bad input (the message names the file and the field).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from shipyard.cli import app
from shipyard.cli.context import settings, store
from shipyard.cli.errors import CommandFailed, console

__all__ = ["chaos"]

chaos = typer.Typer(help="Chaos Toolkit experiments: run one against an environment by "
                    "hand, as the chaos gate does.", no_args_is_help=True)
app.add_typer(chaos, name="chaos")


@chaos.command("run")
def run(
    experiment: Annotated[Path, typer.Option(
        "--experiment", help="A Chaos Toolkit experiment, JSON or YAML (see docs/chaos).",
        dir_okay=False)],
    environment: Annotated[str, typer.Option(
        "--env", help="The environment to run it in (its namespace, its deploy identity).")],
    app_name: Annotated[str, typer.Option(
        "--app", help="The app it targets: its descriptor gives the load paths and SLO.")],
    variables: Annotated[list[str] | None, typer.Option(
        "--var", metavar="NAME=VALUE", help="Set a configuration key of the experiment "
        "(the value read as JSON when it parses, else as text). Repeat.")] = None,
    allowed: Annotated[list[str] | None, typer.Option(
        "--allow-activity", metavar="MODULE", help="Let the experiment call this Python "
        "module's activities too (a Chaos Toolkit extension), or 'http' / 'process' "
        "providers. Repeat.")] = None,
    window: Annotated[float | None, typer.Option(
        "--window", help="Seconds of each steady-state window (default: the settings' "
        "chaos window).", show_default=False)] = None,
    settle: Annotated[float, typer.Option(
        "--settle", help="Seconds of shipyard_settle_seconds, the pause an experiment may "
        "take after an action (the default experiment's, after its kill).")]
    = 5.0,
    rate: Annotated[float, typer.Option(
        "--rate", help="Requests per second of the probes' load.")] = 20.0,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="The seed of shipyard_seed (the choice of victims).",
        show_default=False)] = None,
    journal_file: Annotated[Path | None, typer.Option(
        "--journal", help="Also write the report, the trimmed journal included, to this "
        "JSON file.", dir_okay=False, show_default=False)] = None,
) -> None:
    """Run the Chaos Toolkit experiment FILE against APP in ENV: its hypothesis, method
    and rollbacks, with Shipyard's activities given where to act (the shipyard_* keys)."""
    from shipyard.adapters.chaos_toolkit import ROLLBACK_STRATEGY, read_experiment
    from shipyard.adapters.kube_client import KubeError
    from shipyard.adapters.kube_identity import deploy_kubeconfig, open_identity
    from shipyard.domain.catalog import InvalidDescriptor
    from shipyard.domain.chaos_experiments import (
        GateConfiguration,
        InvalidChaosExperiment,
        title_of,
        with_configuration,
    )
    from shipyard.domain.labels import APP_LABEL, TRACK_LABEL, label_selector
    from stages.catalog import read_descriptor
    from stages.chaos import prepare_experiment, run_prepared_experiment
    from stages.rollouts import service_url

    config = settings()
    overrides = _variables(variables or [])
    try:
        descriptor = read_descriptor(config.source_dir, app_name)
    except InvalidDescriptor as err:
        raise typer.BadParameter(str(err), param_hint="--app") from err
    try:
        document = read_experiment(experiment)
    except InvalidChaosExperiment as err:
        raise typer.BadParameter(str(err), param_hint="--experiment") from err
    namespace = config.namespace_for(environment)
    kubeconfig = deploy_kubeconfig(config.home, namespace)
    selector = label_selector({APP_LABEL: app_name, TRACK_LABEL: "stable"})
    drawn = seed if seed is not None else random.SystemRandom().randrange(2**32)
    try:
        # The Service's address comes from the cluster, after the input is checked: a bad
        # file is exit 2 whether or not the cluster answers.
        gate = GateConfiguration.for_app(
            descriptor, kubeconfig=str(kubeconfig), namespace=namespace, selector=selector,
            service_url=f"http://{app_name}.{namespace}.svc",
            window_seconds=window or config.chaos_window_seconds, settle_seconds=settle,
            rate_per_second=rate, seed=drawn)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    try:
        prepared = prepare_experiment(document, {**gate.to_configuration(), **overrides},
                                      source=str(experiment), allowed=allowed or [],
                                      environment=True)
    except InvalidChaosExperiment as err:
        raise typer.BadParameter(str(err), param_hint="--experiment") from err
    try:
        kube = open_identity(kubeconfig, what=f"the deploy identity of {namespace}")
        url = service_url(kube, namespace, app_name)
    except KubeError as err:
        raise CommandFailed(str(err)) from err
    gate = dataclasses.replace(gate, service_url=url)
    prepared = with_configuration(prepared, {"shipyard_service_url": url, **overrides})

    console.print(Text.assemble((title_of(prepared), "bold"),
                                f" ({experiment}) on {app_name} in {namespace}: load to "
                                f"{url} ({', '.join(gate.paths)}), rollbacks "
                                f"{ROLLBACK_STRATEGY}"))

    async def line(text: str) -> None:
        console.print(Text.assemble((f"{datetime.now():%H:%M:%S} ", "dim"), text))

    report = asyncio.run(run_prepared_experiment(prepared, source=str(experiment),
                                                 target=selector, log=line))
    data = report.to_json()
    _audit(app_name, namespace, str(experiment), drawn, data)
    if journal_file is not None:
        journal_file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    console.print(_journal_table(data))
    style = "green" if not report.reason else "bold red"
    console.print(Text(f"{'✔' if not report.reason else '✘'} {report.summary()}", style=style))
    if report.reason:
        raise CommandFailed("")


def _variables(pairs: list[str]) -> dict[str, Any]:
    """``--var NAME=VALUE`` as configuration: JSON values when they parse, else text."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--var")
        try:
            values[name.strip()] = json.loads(text)
        except ValueError:
            values[name.strip()] = text
    return values


def _journal_table(report: dict[str, Any]) -> Table:
    """The journal in rows: every probe of each hypothesis, then each action and rollback."""
    table = Table(title="Journal", title_justify="left")
    for column in ("STEP", "NAME", "VALUE", "EXPECTED", "OK"):
        table.add_column(column)
    for part in ("before", "after"):
        for probe in (report.get(part) or {}).get("probes", []):
            tolerance = probe["tolerance"]
            expected = {"max": f"≤ {tolerance.get('max')}", "min": f"≥ {tolerance.get('min')}",
                        "range": f"in {tolerance.get('range')}",
                        "exact": f"is {tolerance.get('value')}"}.get(
                tolerance.get("type"), str(tolerance.get("text", "")))
            value = probe.get("note") if probe.get("value") is None else probe["value"]
            table.add_row(f"hypothesis {part}", probe["name"], str(value), expected,
                          _ok(probe["met"]))
    for section in ("method", "rollbacks"):
        for activity in report.get(section, []):
            detail = activity["error"] or json.dumps(activity["output"])[:80]
            table.add_row(section, f"{activity['kind']} {activity['name']}", detail, "",
                          _ok(activity["status"] == "succeeded"))
    return table


def _ok(good: bool) -> Text:
    return Text("✔ yes", style="green") if good else Text("✘ no", style="bold red")


def _audit(app_name: str, namespace: str, source: str, seed: int,
           report: dict[str, Any]) -> None:
    """The experiment in the audit trail, as the gate records its own: it acted on the
    environment."""
    from shipyard.cli.judgments import operating_system_user
    from shipyard.store import Ledger

    Ledger(store()).audit(actor=operating_system_user(), action="chaos-experiment",
                          subject_kind="app", subject_id=app_name,
                          details={"route": "cli", "app": app_name, "namespace": namespace,
                                   "seed": seed, "source": source,
                                   **{k: v for k, v in report.items() if k != "journal"}})
