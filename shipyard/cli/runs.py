"""Reading runs: ``shipyard runs``, ``shipyard show RUN``, ``shipyard logs RUN``. What they
print hides credentials in repository URLs, as the web UI does."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Annotated

import typer

from pipelines.launch import follow_run
from shipyard.adapters.prefect import PrefectError
from shipyard.cli import app
from shipyard.cli.context import prefect_ui_url, store, use_prefect
from shipyard.cli.errors import CommandFailed, console
from shipyard.cli.judgments import operating_system_user
from shipyard.cli.render import run_detail, runs_table, transitions_table
from shipyard.domain.access import Role
from shipyard.domain.redaction import redact_text, redact_url, redact_values
from shipyard.domain.states import State
from shipyard.store import RunRecord

__all__ = ["cancel", "logs", "redacted", "runs", "show"]

FOLLOW_SECONDS = 0.5
LOG_PAGE = 1000
"""Log chunks read at a time: a long log is printed without being held whole."""

RunId = Annotated[str, typer.Argument(metavar="RUN", help="Run id or its first 4+ characters.")]


@app.command()
def runs(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000,
                                       help="How many runs to list.")] = 20,
    pipeline: Annotated[str | None, typer.Option(help="Only runs of this pipeline.")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="Only runs of this app.")] = None,
    state: Annotated[State | None, typer.Option(help="Only runs in this state.")] = None,
) -> None:
    """List recent runs, newest first."""
    found = store().list_runs(limit=limit, pipeline=pipeline, app=app_name, state=state)
    if not found:
        console.print("No runs yet. Start one with `shipyard run ci --repo PATH`.")
        return
    console.print(runs_table([redacted(run) for run in found]))


@app.command()
def show(
    run_id: RunId,
    transitions: Annotated[bool, typer.Option("--transitions", "-t",
                                              help="Also list every state transition.")] = False,
) -> None:
    """Show one run: its stages with states, reasons and durations."""
    record = redacted(store().get_run(run_id))
    console.print(run_detail(record, prefect_ui=prefect_ui_url()))
    if transitions:
        console.print(transitions_table([
            replace(t, message=redact_text(t.message))
            for t in store().transitions(record.id)]))


@app.command()
def logs(
    run_id: RunId,
    stage: Annotated[str | None, typer.Argument(help="Only this stage's log.")] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new output until the run ends.")] = False,
) -> None:
    """Print the logs a run's stages recorded; with --follow, as they are written."""
    runs_store = store()
    run = runs_store.get_run(run_id)
    last_id, current = 0, None
    while True:
        # The state is read before the logs: a run final here has written all its output.
        run = runs_store.get_run(run.id)
        if stage is not None and stage not in {s.ref for s in run.stages}:
            if not follow or run.state.is_terminal:
                runs_store.read_logs(run.id, stage)  # raises: names the stages it has
            time.sleep(FOLLOW_SECONDS)  # a stage the pipeline has not added yet
            continue
        while chunks := runs_store.read_logs(run.id, stage, after_id=last_id,
                                             limit=LOG_PAGE):
            for chunk in chunks:
                if chunk.stage_ref != current:
                    current = chunk.stage_ref
                    console.rule(current, align="left")
                console.out(redact_text(chunk.text), end="", highlight=False)
                last_id = chunk.id
        if not follow or run.state.is_terminal:
            break
        time.sleep(FOLLOW_SECONDS)
    if follow:
        console.print(f"run {run.short_id} {run.state.value}", highlight=False)


def redacted(run: RunRecord) -> RunRecord:
    """``run`` as it may be shown: no credentials in its repository URL, parameters or
    messages (:mod:`shipyard.domain.redaction`)."""
    return replace(
        run, repo_url=redact_url(run.repo_url) if run.repo_url else run.repo_url,
        message=redact_text(run.message), parameters=redact_values(run.parameters),
        stages=tuple(replace(s, message=redact_text(s.message)) for s in run.stages))


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id or its first 4+ "
                                          "characters.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why, for the run and the "
                                        "audit trail.")] = "",
) -> None:
    """Cancel a run that has not ended: at once in the store, and in Prefect, whose worker
    stops the flow's process; waits (up to a minute) until Prefect says it ended."""
    # Here, not at the top: the web UI's modules are not every command's to import.
    from ui.actions import ActionRefused
    from ui.actions import cancel as cancel_run
    from ui.auth import Principal

    use_prefect()
    who = Principal(name=operating_system_user(), role=Role.ADMIN, via="cli")

    async def cancel_and_settle() -> RunRecord:
        cancelled = await cancel_run(store(), store().get_run(run_id).id, who, reason)
        console.print(f"run {cancelled.short_id} cancelled; waiting for its flow run to end")
        final = cancelled
        async for record in follow_run(store(), cancelled.id, timeout_seconds=60):
            final = record
        return final

    try:
        final = asyncio.run(cancel_and_settle())
    except (ActionRefused, PrefectError) as err:
        raise CommandFailed(str(err)) from err
    except TimeoutError:
        console.print("its flow run has not ended within a minute; `shipyard show` follows it")
        return
    console.print(f"run {final.short_id} {final.state.value}: {final.message}",
                  highlight=False)
