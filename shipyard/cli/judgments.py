"""Answering manual judgments: ``shipyard approve RUN`` and ``shipyard reject RUN``.

RUN is the run that waits (``cd``, ``release`` and ``promote`` wait in their own
``judgment`` stage), or a run that started it as a child, by any unique prefix of its id.
The answer goes to the waiting Prefect flow run
(:func:`stages.judgments_service.answer_judgment`, which the web API uses too), signed
with Shipyard's judgment key and the route ``cli``; the flow records it and goes on within
seconds.

Who answers is the operating-system user the command runs as (from the process's user id,
not from ``$USER``, which anyone can set). There is no ``--as``: the CLI runs on the
machine that holds the store and the key, it has no account of its own to check a name
against, so "as someone else" could only put a name in the audit trail that nobody
proved. A person who is not at this machine answers as themselves, in the UI or with an
API token; ``--as`` is refused with that advice and nothing is answered.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from typing import Annotated

import typer

from shipyard.cli import app
from shipyard.cli.context import settings, store, use_prefect
from shipyard.cli.errors import CommandFailed, console
from stages.judgment import judgment_key
from stages.judgments_service import JudgmentAnswer, JudgmentError, answer_judgment

__all__ = ["approve", "operating_system_user", "reject"]

RunId = Annotated[str, typer.Argument(
    metavar="RUN", help="The waiting run, or a run that started it: its id or first 4+ "
    "characters.")]
# Kept, hidden, only to say why it is gone: a usage error that names the way instead.
Actor = Annotated[str | None, typer.Option("--as", "--actor", metavar="NAME", hidden=True)]


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


def operating_system_user() -> str:
    """The name of the user this process runs as (its effective uid), as the audit trail
    records an answer from the CLI."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (containers)
        return f"uid {uid}"


def _answer(run_id: str, decision: str, comment: str, actor: str | None) -> JudgmentAnswer:
    if actor is not None:
        raise typer.BadParameter(
            f"the CLI answers as the user it runs as ({operating_system_user()}), never as "
            f"someone else; {actor!r} answers as themselves in the UI or with an API token "
            "(`shipyard token create`)", param_hint="'--as'")
    use_prefect()
    try:
        return asyncio.run(answer_judgment(
            store(), run_id, decision, actor=operating_system_user(), route="cli",
            key=judgment_key(settings()), comment=comment))
    except JudgmentError as err:
        raise CommandFailed(str(err)) from err
