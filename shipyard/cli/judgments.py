"""Answering manual judgments: ``shipyard approve RUN`` and ``shipyard reject RUN``.

RUN is the run that waits, or a run that started it (a ``release`` whose ``cd`` run
waits), by any unique prefix of its id. The answer goes to the waiting Prefect flow run
(:func:`stages.judgments_service.answer_judgment`, which the web API uses too); the flow
records it and goes on within seconds.
"""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated

import typer

from shipyard.cli import app
from shipyard.cli.context import store, use_prefect
from shipyard.cli.errors import CommandFailed, console
from stages.judgments_service import JudgmentAnswer, JudgmentError, answer_judgment

__all__ = ["approve", "reject"]

RunId = Annotated[str, typer.Argument(
    metavar="RUN", help="The waiting run, or a run that started it: its id or first 4+ "
    "characters.")]
Actor = Annotated[str | None, typer.Option(
    "--as", "--actor", metavar="NAME", help="Who answers (default: you).")]


@app.command()
def approve(
    run_id: RunId,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why; recorded with the "
                                         "approval.")] = "",
    actor: Actor = None,
) -> None:
    """Approve the manual judgment RUN waits for: the pipeline goes on."""
    answer = _answer(run_id, "approve", comment, actor)
    console.print(f"approved {answer.subject} as {answer.actor}: stage {answer.stage_ref} of "
                  f"run {answer.run_id[:8]} succeeds and the pipeline goes on "
                  f"(`shipyard logs {answer.run_id[:8]} --follow`)", highlight=False)


@app.command()
def reject(
    run_id: RunId,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why not; required, "
                                        "recorded with the rejection.")],
    actor: Actor = None,
) -> None:
    """Reject the manual judgment RUN waits for: the stage fails (Rejected) and so does
    the run."""
    answer = _answer(run_id, "reject", reason, actor)
    console.print(f"rejected {answer.subject} as {answer.actor}: stage {answer.stage_ref} of "
                  f"run {answer.run_id[:8]} fails with reason Rejected", highlight=False)


def _answer(run_id: str, decision: str, comment: str, actor: str | None) -> JudgmentAnswer:
    use_prefect()
    try:
        return asyncio.run(answer_judgment(store(), run_id, decision,
                                           actor=actor or getpass.getuser(), comment=comment))
    except JudgmentError as err:
        raise CommandFailed(str(err)) from err
