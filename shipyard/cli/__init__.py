"""The ``shipyard`` command (Typer + Rich).

Exit codes: 0 success, 1 failure (including a run that did not succeed when waited for),
2 usage. Every error is one line on stderr, starting with ``error:``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.errors import EXPECTED_ERRORS, CommandFailed, err_console

__all__ = ["app", "main"]

# Typer raises click's UsageError, or the copy of click it vendors: find whichever it is.
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

app = typer.Typer(
    name="shipyard",
    help="Shipyard: continuous delivery with Prefect pipelines onto Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


@app.callback()
def _options(
    kubeconfig: Annotated[Path | None, typer.Option(
        "--kubeconfig", help="Deploy to the cluster of this kubeconfig instead of the local "
        "one (as KUBECONFIG does); nothing local is started for Kubernetes.",
        exists=True, dir_okay=False, resolve_path=True)] = None,
) -> None:
    # Through the environment, so every component and the processes the stack starts (the
    # worker's flows) see the same cluster.
    if kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(kubeconfig)


HOT_COMMANDS = {
    **dict.fromkeys(("ci", "release", "deploy", "promote", "rollback", "trigger", "restart"),
                    "pipelines"),
    **dict.fromkeys(("approve", "reject"), "judgments"),
    **dict.fromkeys(("runs", "show", "logs", "cancel"), "runs"),
}
"""Commands that must answer at once (a rollback while production burns): only their own
module is imported for them. Every other command, and help, imports every module."""


def _command_name(argv: list[str]) -> str | None:
    """The command ``argv`` names, past the global options."""
    args = iter(argv)
    for arg in args:
        if arg == "--kubeconfig":
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _register(argv: list[str] | None = None) -> None:
    # Command modules import heavy libraries (Prefect); they register on import.
    hot = HOT_COMMANDS.get(_command_name(sys.argv[1:] if argv is None else argv) or "")
    if hot is not None:
        import importlib

        importlib.import_module(f"shipyard.cli.{hot}")
        return
    from shipyard.cli import (  # noqa: F401
        accounts,
        apps,
        canary,
        chaos,
        history,
        judgments,
        pipelines,
        reconcile,
        retention,
        runs,
        serve,
        stack,
    )


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with 0, 1 or 2."""
    _register(argv)
    try:
        result = app(args=argv, standalone_mode=False)
    except _UsageError as err:
        if type(err).__name__ == "NoArgsIsHelpError":
            sys.exit(2)  # the help was printed
        ctx = getattr(err, "ctx", None)
        command = ctx.command_path if ctx else "shipyard"
        message = " ".join(err.format_message().split())  # type: ignore[attr-defined]
        err_console.print(f"error: {message} (see `{command} --help`)", markup=False,
                          highlight=False)
        sys.exit(2)
    except typer.Abort:
        err_console.print("error: aborted", markup=False, highlight=False)
        sys.exit(1)
    except CommandFailed as err:
        if str(err):
            err_console.print(f"error: {err}", markup=False, highlight=False)
        sys.exit(1)
    except EXPECTED_ERRORS as err:
        err_console.print(f"error: {_one_line(err)}", markup=False, highlight=False)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
