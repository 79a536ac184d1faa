"""Starting pipelines: ``shipyard ci``, ``release``, ``deploy``, ``promote``, ``rollback``,
and ``trigger`` (ci by hand, as a push starts it).

Each records the run, hands it to its Prefect deployment and, unless ``--no-wait``, follows
it until it is final: live in a terminal (a progress bar over the stages and the stage
table); elsewhere (CI logs, pipes) one line per change of state as it happens, then the
stage table. A waited run that does not succeed exits 1.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import AsyncIterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from pipelines.launch import OnRefusal, follow_run, launch
from shipyard.adapters.git import validate_ref, validate_repo_url
from shipyard.cli import app
from shipyard.cli.context import prefect_ui_url, settings, store, use_prefect
from shipyard.cli.errors import CommandFailed, console
from shipyard.cli.render import duration, run_detail
from shipyard.domain.catalog import validate_app_name
from shipyard.domain.clock import Clock, system_clock
from shipyard.domain.delivery_options import DeliveryOptions
from shipyard.domain.state_changes import RunSnapshot, StateChange, Status, state_changes
from shipyard.domain.states import State
from shipyard.store import RunRecord
from stages.restart import RestartRefused, restart_request

__all__ = ["ci", "deploy", "promote", "release", "rollback", "start_and_follow", "trigger"]

Repo = Annotated[str, typer.Option("--repo", help="Git URL or local path of the repository.")]
Ref = Annotated[str, typer.Option("--ref", help="Branch, tag or commit to build.")]
Apps = Annotated[list[str] | None, typer.Option("--app", help="An app to build (repeat); "
                                                "default: every app of the commit.")]
Wait = Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the run until it ends.")]
Timeout = Annotated[float, typer.Option("--timeout", min=1,
                                        help="Seconds to wait for the run.")]
Why = Annotated[str, typer.Option("--why", help="Why, for the release history.")]
Actor = Annotated[str | None, typer.Option("--actor", help="Who asks (default: you).")]


@app.command()
def ci(repo: Repo = ".", ref: Ref = "main", apps: Apps = None, wait: Wait = True,
       timeout: Timeout = 1800, actor: Actor = None,
       all_apps: Annotated[bool, typer.Option(
           "--all", help="Test, build and push every app, changed or not.")] = False) -> None:
    """Check out a commit; test, build and push the apps it changes."""
    repo = _repo(repo)
    validate_ref(ref)
    start_and_follow("ci", {"repo": repo, "ref": ref, "apps": _apps(apps),
                            "all_apps": all_apps}, repo_url=repo,
                     ref=ref, app_name=_single(apps), wait=wait, timeout=timeout,
                     actor=actor)


Environments = Annotated[list[str] | None, typer.Option(
    "--env", help="An environment to deliver into, in order (repeat); default: every one "
    "of SHIPYARD_ENVIRONMENTS, in order.")]
CanaryWindow = Annotated[float | None, typer.Option(
    "--canary-window", min=1, help="Seconds of canary analysis (default "
    "SHIPYARD_CANARY_WINDOW_SECONDS).")]
Judgment = Annotated[bool, typer.Option(
    "--judgment/--no-judgment", help="Wait for `shipyard approve` before production.")]
JudgmentTimeout = Annotated[float | None, typer.Option(
    "--judgment-timeout", min=1, help="Seconds the judgment waits before it fails "
    "(default SHIPYARD_JUDGMENT_TIMEOUT_SECONDS).")]
Warm = Annotated[float | None, typer.Option(
    "--warm-seconds", min=0, help="How long the previous production version stays scaled "
    "after the switch (default SHIPYARD_WARM_SECONDS).")]


@app.command()
def release(repo: Repo = ".", ref: Ref = "main", apps: Apps = None,
            envs: Environments = None, warm_seconds: Warm = None,
            canary_window: CanaryWindow = None, judgment: Judgment = False,
           judgment_timeout: JudgmentTimeout = None,
            wait: Wait = True, timeout: Timeout = 3600, actor: Actor = None) -> None:
    """ci for a commit, then deliver every app it built: staging, then red/black into
    production, in dependency order; any failure rolls the whole release back."""
    repo = _repo(repo)
    validate_ref(ref)
    options = _options(warm_seconds, canary_window, judgment, judgment_timeout)
    start_and_follow("release", {"repo": repo, "ref": ref, "apps": _apps(apps),
                                 "environments": _environments(envs),
                                 "options": options},
                     repo_url=repo, ref=ref, app_name=_single(apps), wait=wait,
                     timeout=timeout, actor=actor)


@app.command()
def deploy(app_name: Annotated[str, typer.Argument(metavar="APP")],
           ci_run: Annotated[str, typer.Option("--ci-run", help="The ci run whose build to "
                                               "release (id or 4+ characters).")],
           envs: Environments = None, why: Why = "", warm_seconds: Warm = None,
           canary_window: CanaryWindow = None, judgment: Judgment = False,
           judgment_timeout: JudgmentTimeout = None,
           wait: Wait = True, timeout: Timeout = 3600, actor: Actor = None) -> None:
    """Deliver APP as built by a ci run (the cd pipeline)."""
    validate_app_name(app_name)
    ci_run_id = store().get_run(ci_run).id
    options = _options(warm_seconds, canary_window, judgment, judgment_timeout, why)
    start_and_follow("cd", {"app": app_name, "ci_run_id": ci_run_id,
                            "environments": _environments(envs),
                            "options": options},
                     app_name=app_name, wait=wait, timeout=timeout, actor=actor)


@app.command()
def promote(app_name: Annotated[str, typer.Argument(metavar="APP")],
            from_env: Annotated[str | None, typer.Option(
                "--from", help="Where the version must have run (default: the environment "
                "before --to in SHIPYARD_ENVIRONMENTS).")] = None,
            to_env: Annotated[str | None, typer.Option(
                "--to", help="Where it goes (default: SHIPYARD_PRODUCTION_ENVIRONMENT).")]
            = None,
            version: Annotated[str | None, typer.Option(
                "--version", help="A version that ran in --from (default: what runs there "
                "now).")] = None,
            why: Why = "", warm_seconds: Warm = None, canary_window: CanaryWindow = None,
            judgment: Judgment = False, judgment_timeout: JudgmentTimeout = None,
            wait: Wait = True, timeout: Timeout = 1800, actor: Actor = None) -> None:
    """Run the production part (bake, red/black, scale-down) for a version that passed
    the environment before production."""
    validate_app_name(app_name)
    to_env = to_env or settings().production_environment
    from_env = from_env or _environment_before(to_env)
    options = _options(warm_seconds, canary_window, judgment, judgment_timeout, why)
    start_and_follow("promote", {"app": app_name, "from_env": from_env, "to_env": to_env,
                                 "version": version, "options": options},
                     app_name=app_name, wait=wait, timeout=timeout, actor=actor)


@app.command()
def rollback(app_name: Annotated[str, typer.Argument(metavar="APP")],
             env: Annotated[str | None, typer.Option(
                 "--env", help="The environment to roll back (default: "
                 "SHIPYARD_PRODUCTION_ENVIRONMENT).")] = None,
             to: Annotated[str | None, typer.Option(
                 "--to", help="Version or release id to go back to (default: the previous "
                 "version).")] = None,
             reason: Annotated[str, typer.Option("--reason", "--why",
                                                 help="Why, for the release history.")] = "",
             revert: Annotated[bool, typer.Option(
                 "--revert", help="Also push a branch to the source repository that puts the "
                 "app back as it was at that version.")] = False,
             wait: Wait = True, timeout: Timeout = 900, actor: Actor = None) -> None:
    """Switch an environment back to an earlier release of an app: at once while that
    version is warm, else by re-applying its recorded manifests."""
    validate_app_name(app_name)
    start_and_follow("rollback", {"app": app_name,
                                  "environment": env or settings().production_environment,
                                  "to": to,
                                  "why": reason, "revert": revert},
                     app_name=app_name, wait=wait, timeout=timeout, actor=actor)


@app.command()
def trigger(
    repo: Annotated[str, typer.Option("--repo", help="Git URL or local path of the "
                                      "repository.", show_default=False)],
    ref: Annotated[str, typer.Option("--ref", help="Branch, tag or commit to build.",
                                     show_default=False)],
    follow: Annotated[bool, typer.Option("--follow", help="Follow the run until it "
                                         "ends.")] = False,
    timeout: Timeout = 1800, actor: Actor = None,
) -> None:
    """Start ci by hand, the way a push does: recorded first, then handed to Prefect; if
    Prefect cannot take it, it stays queued and `shipyard ui` hands it over later."""
    repo = _repo(repo)
    validate_ref(ref)
    start_and_follow("ci", {"repo": repo, "ref": ref}, repo_url=repo, ref=ref, wait=follow,
                     timeout=timeout, actor=actor, trigger="manual",
                     on_refusal=OnRefusal.KEEP_QUEUED)


@app.command()
def restart(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id or its first 4+ "
                                          "characters.")],
    from_stage: Annotated[str, typer.Option(
        "--from", help="The stage to run again, with everything after it; the stages "
        "before it reuse the run's outputs.", show_default=False)],
    wait: Wait = True, timeout: Timeout = 1800, actor: Actor = None,
) -> None:
    """Restart a run of any pipeline from a stage: a new run with the same parameters (at
    the same commit), reusing what the stages before that one produced; the stage and
    everything after it run again, and so do canaries, chaos and judgments, which never
    trust an earlier verdict."""
    original = store().get_run(run_id)
    try:
        request = restart_request(original, from_stage)
    except RestartRefused as err:
        raise CommandFailed(str(err)) from err
    start_and_follow(request.pipeline, request.parameters, repo_url=request.repo_url,
                     ref=request.ref, app_name=request.app, wait=wait, timeout=timeout,
                     actor=actor, trigger="restart", restarted_from=request.restarted_from)


def start_and_follow(pipeline: str, parameters: dict[str, Any], *, wait: bool,
                     timeout: float, actor: str | None, app_name: str | None = None,
                     repo_url: str | None = None, ref: str | None = None,
                     trigger: str = "cli",
                     on_refusal: OnRefusal = OnRefusal.CANCEL,
                     restarted_from: str | None = None) -> RunRecord:
    """Launch ``pipeline`` and, with ``wait``, follow it live; raise CommandFailed when a
    followed run does not succeed."""
    use_prefect()
    who = actor or getpass.getuser()
    record = asyncio.run(launch(store(), pipeline, parameters, trigger=trigger, actor=who,
                                app=app_name, repo_url=repo_url, ref=ref,
                                on_refusal=on_refusal, restarted_from=restarted_from))
    console.print(f"{pipeline} run [bold]{record.short_id}[/] queued "
                  f"(Prefect flow run {record.prefect_flow_run_id})")
    if not wait:
        console.print(f"follow it with `shipyard show {record.short_id}`")
        return record
    final = asyncio.run(_follow_live(record, timeout))
    if final.state is not State.SUCCEEDED:
        raise CommandFailed(f"{pipeline} run {final.short_id} {final.state.value}: "
                            f"{final.reason}: {final.message}")
    return final


async def _follow_live(queued: RunRecord, timeout: float) -> RunRecord:
    if not console.is_terminal:
        # A live display redraws in place, which a log or a pipe cannot show: it would
        # print nothing until the run is over.
        return await _follow_lines(queued, follow_run(store(), queued.id,
                                                      timeout_seconds=timeout),
                                   out=console, clock=system_clock,
                                   prefect_ui=prefect_ui_url())
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("stages"), TimeElapsedColumn(),
                        console=console, transient=True)
    task = progress.add_task(f"{queued.pipeline} {queued.short_id}", total=None)
    record = queued
    with Live(Group(progress, run_detail(queued, prefect_ui=prefect_ui_url())), console=console,
              refresh_per_second=8) as live:
        async for record in follow_run(store(), queued.id, timeout_seconds=timeout):
            done = sum(1 for s in record.stages if s.state.is_terminal)
            progress.update(task, total=len(record.stages), completed=done,
                            description=f"{record.pipeline} {record.short_id} "
                                        f"{record.state.value}")
            live.update(Group(progress, run_detail(record, prefect_ui=prefect_ui_url())))
        live.update(run_detail(record, prefect_ui=prefect_ui_url()))
    console.print()
    return record


async def _follow_lines(queued: RunRecord, records: AsyncIterable[RunRecord], *,
                        out: Console, clock: Clock, prefect_ui: str | None) -> RunRecord:
    """Print one line per change of state of the run and its stages, each as soon as a
    record shows it, then the stage table of the last record; return that record."""
    record = queued
    previous: RunSnapshot | None = None
    async for record in records:
        current = _snapshot(record)
        seen_at = clock()
        for change in state_changes(previous, current):
            # Rich flushes the file after every print, so `| cat` and CI logs get the
            # line now, not when a buffer fills.
            out.print(_state_change_line(record, change, seen_at), markup=False,
                      highlight=False, soft_wrap=True)
        previous = current
    out.print(run_detail(record, prefect_ui=prefect_ui))
    out.print()
    return record


# Their reasons (StageStarted, Succeeded) say nothing the state does not.
_STATES_WITHOUT_DETAIL = frozenset({State.QUEUED, State.RUNNING, State.SUCCEEDED})


def _state_change_line(run: RunRecord, change: StateChange, seen_at: datetime) -> str:
    """``12:03:04  release 3f2a9c1e  stage deploy:staging/web failed in 4.2s: RolloutFailed:
    …``; the time is when the follower saw the change, in UTC."""
    status = change.status
    line = (f"{seen_at.astimezone(UTC):%H:%M:%S}  {run.pipeline} {run.short_id}  "
            + ("" if change.is_run else f"stage {change.stage} ") + status.state.value)
    if status.state.is_terminal and status.duration_seconds is not None:
        line += f" in {duration(status.duration_seconds)}"
    if status.state not in _STATES_WITHOUT_DETAIL:
        # A message may span lines (a test report, a traceback); the line stays one line.
        detail = [part for part in (status.reason, " ".join(status.message.split())) if part]
        if detail:
            line += ": " + ": ".join(detail)
    return line


def _snapshot(record: RunRecord) -> RunSnapshot:
    return RunSnapshot(
        run=Status(record.state, record.reason, record.message, record.duration_seconds),
        stages=tuple((stage.ref, Status(stage.state, stage.reason, stage.message,
                                        stage.duration_seconds))
                     for stage in record.stages),
    )


def _options(warm_seconds: float | None, canary_window: float | None, judgment: bool,
             judgment_timeout: float | None, why: str = "") -> dict[str, object]:
    """The delivery options flag by flag, as the flow parameter records them."""
    return DeliveryOptions(warm_seconds=warm_seconds, canary_window_seconds=canary_window,
                           judgment=judgment, judgment_timeout_seconds=judgment_timeout,
                           why=why).as_parameter()


def _environment_before(environment: str) -> str:
    """Where a promotion into ``environment`` starts when ``--from`` is not given."""
    try:
        before = settings().environment_before(environment)
    except ValueError as err:
        raise CommandFailed(f"--to: {err}") from None
    if before is None:
        raise CommandFailed(f"--to: {environment} is the first of SHIPYARD_ENVIRONMENTS; "
                            "name the environment to promote from with --from")
    return before


def _repo(repo: str) -> str:
    """A local path is made absolute: the worker runs elsewhere. A URL git may not fetch
    is refused (ValueError) before anything is recorded."""
    path = Path(repo).expanduser()
    return str(path.resolve()) if path.is_dir() else validate_repo_url(repo)


def _apps(apps: list[str] | None) -> list[str] | None:
    for name in apps or []:
        validate_app_name(name)
    return list(apps) if apps else None


def _environments(envs: list[str] | None) -> list[str] | None:
    for name in envs or []:
        try:
            validate_app_name(name)
        except ValueError as err:
            raise CommandFailed(f"--env {name!r}: environments are named like apps "
                                "(lowercase letters, digits and '-')") from err
    return list(envs) if envs else None


def _single(apps: list[str] | None) -> str | None:
    return apps[0] if apps and len(apps) == 1 else None
