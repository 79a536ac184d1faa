"""How runs look in a terminal: one vocabulary of state icons and colours, so colour is
never the only signal, and tables for ``runs`` and ``show``."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group
from rich.table import Table
from rich.text import Text

from shipyard.domain.states import State
from shipyard.store import RunRecord, TransitionRecord

__all__ = ["duration", "run_detail", "runs_table", "state_text", "transitions_table"]

_STYLE = {
    State.QUEUED: ("○", "dim"),
    State.RUNNING: ("▶", "bold blue"),
    State.WAITING: ("⏸", "bold yellow"),
    State.SUCCEEDED: ("✔", "green"),
    State.FAILED: ("✘", "bold red"),
    State.CANCELLED: ("⊘", "magenta"),
    State.SKIPPED: ("↷", "dim"),
    State.ROLLED_BACK: ("↺", "yellow"),
}


def state_text(state: State) -> Text:
    """``✔ succeeded`` in green, ``✘ failed`` in red, and so on."""
    icon, style = _STYLE[state]
    return Text(f"{icon} {state.value}", style=style)


def duration(seconds: float | None, *, started: datetime | None = None) -> str:
    """``1.2s``, ``3m04s`` or ``1h02m``; a run still going counts from ``started``."""
    if seconds is None and started is not None:
        seconds = (datetime.now(UTC) - started).total_seconds()
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "—"


def runs_table(runs: list[RunRecord]) -> Table:
    table = Table(title="Recent runs", title_justify="left", expand=False)
    for column in ("RUN", "PIPELINE", "APP", "STATE", "REASON", "REF", "COMMIT", "TRIGGER",
                   "CREATED (UTC)", "DURATION"):
        table.add_column(column, no_wrap=column in ("RUN", "STATE", "COMMIT"))
    for run in runs:
        table.add_row(
            run.short_id, run.pipeline, run.app or "—", state_text(run.state), run.reason,
            run.ref or "—", (run.commit_sha or "")[:12] or "—", run.trigger,
            _when(run.created_at), duration(run.duration_seconds, started=run.started_at),
        )
    return table


def run_detail(run: RunRecord, *, prefect_ui: str | None = None) -> Group:
    """The run's header and its stages in graph order, with reasons and durations."""
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    header.add_row("run", run.id)
    header.add_row("pipeline", run.pipeline + (f" ({run.app})" if run.app else ""))
    header.add_row("state", Text.assemble(state_text(run.state), f"  {run.reason}"))
    if run.message:
        header.add_row("message", run.message)
    header.add_row("trigger", run.trigger + (f" by {run.actor}" if run.actor else ""))
    if run.repo_url:
        header.add_row("source", f"{run.repo_url} @ {run.ref or '—'}"
                       + (f" ({run.commit_sha[:12]})" if run.commit_sha else ""))
    header.add_row("created", _when(run.created_at))
    header.add_row("duration", duration(run.duration_seconds, started=run.started_at))
    if run.prefect_flow_run_id:
        link = (f"{prefect_ui}/runs/flow-run/{run.prefect_flow_run_id}" if prefect_ui
                else run.prefect_flow_run_id)
        header.add_row("prefect", link)
    if run.restarted_from:
        header.add_row("restarted from", run.restarted_from)
    stages = Table(title="Stages", title_justify="left")
    for column in ("STAGE", "REQUIRES", "STATE", "REASON", "DURATION", "TRIES", "MESSAGE"):
        stages.add_column(column, no_wrap=column in ("STAGE", "STATE"))
    for stage in run.stages:
        stages.add_row(
            stage.ref, ", ".join(stage.requires) or "—", state_text(stage.state),
            stage.reason, duration(stage.duration_seconds, started=stage.started_at),
            str(stage.attempts), stage.message,
        )
    return Group(header, Text(""), stages)


def transitions_table(transitions: list[TransitionRecord]) -> Table:
    table = Table(title="Transitions", title_justify="left")
    for column in ("AT (UTC)", "SUBJECT", "FROM", "TO", "REASON", "MESSAGE"):
        table.add_column(column)
    for t in transitions:
        table.add_row(_when(t.at), t.stage_ref or "(run)",
                      t.from_state.value if t.from_state else "—", state_text(t.to_state),
                      t.reason, t.message)
    return table
