"""What the warm worker starts for each flow run, in place of ``python -m prefect.engine``.

``python -S fork_client.py -m prefect.engine`` asks the zygote at ``$SHIPYARD_ZYGOTE_SOCKET``
to fork a child that runs ``-m prefect.engine`` with this process's standard streams,
environment and directory, then stands in for that child: it forwards the signals Prefect
sends (SIGTERM and SIGINT when a run is cancelled, SIGHUP, SIGQUIT) and exits as the child
did, with its code or by its signal. To the worker it is the flow run's process. Killing it
outright ends the child too (the zygote sees the connection close).

Without a zygote, or when the zygote refuses, it becomes the command itself (``exec``), so
a run never depends on the zygote being up. It imports the standard library only (run with
``-S``, it starts in about 15 ms).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from typing import NoReturn

try:
    from shipyard.worker import wire
except ImportError:  # run by path with -S: the standard library and this folder only
    import wire  # type: ignore[import-not-found,no-redef]

__all__ = ["FORWARDED_SIGNALS", "main"]

SOCKET_ENV = "SHIPYARD_ZYGOTE_SOCKET"
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
CONNECT_TIMEOUT_SECONDS = 2.0


def main(argv: list[str]) -> int:
    """``argv`` is what follows the script: ``-m MODULE ARGS...`` or ``SCRIPT ARGS...``."""
    if not argv:
        print("usage: fork_client.py -m MODULE [ARGS...]", file=sys.stderr)
        return 2
    # A session of its own, as Prefect starts a stock run: a signal to the worker's process
    # group (the worker stopping) does not reach the run; the worker's own signals to this
    # process (a cancellation) do, forwarded.
    with contextlib.suppress(PermissionError):  # already a session leader
        os.setsid()
    path = os.environ.get(SOCKET_ENV)
    conn = _connect(path) if path else None
    if conn is None:
        _run_cold(argv, "no zygote" if not path else f"no zygote answers at {path}")
    env = {k: v for k, v in os.environ.items() if k != SOCKET_ENV}
    pending: list[int] = []
    child: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child[0], signum)
        else:
            pending.append(signum)

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    try:
        wire.send(conn, wire.ForkRequest(argv=list(argv), env=env, cwd=os.getcwd()),
                  fds=[0, 1, 2])
        answer, _ = wire.receive(conn)
    except (OSError, wire.WireError) as err:
        conn.close()
        _run_cold(argv, f"the zygote did not answer ({err})")
    if isinstance(answer, wire.Refused):
        conn.close()
        _run_cold(argv, f"the zygote refused: {answer.reason}")
    if not isinstance(answer, wire.Forked):
        conn.close()
        _run_cold(argv, f"the zygote answered {answer.kind!r}")
    child.append(answer.pid)
    for waiting in pending:
        forward(waiting, None)
    try:
        ended, _ = wire.receive(conn)
    except (OSError, wire.WireError):
        return _outlive_zygote(answer.pid)
    if not isinstance(ended, wire.Exited):
        return 1
    return _mirror(ended.status)


def _connect(path: str) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(CONNECT_TIMEOUT_SECONDS)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    conn.settimeout(None)
    return conn


def _run_cold(argv: list[str], why: str) -> NoReturn:
    """Become the command itself, as the stock process worker would have started it."""
    print(f"shipyard fork client: {why}; starting the run in a new interpreter",
          file=sys.stderr, flush=True)
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    os.execv(sys.executable, [sys.executable, *argv])  # noqa: S606 - the run's own command


def _mirror(status: int) -> int:
    """Exit as the child did: by the same signal, or with the same code."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum not in (signal.SIGKILL, signal.SIGSTOP):  # those have no handler
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return 128 + signum  # a signal that does not end a process (it should not happen)
    return os.waitstatus_to_exitcode(status)


def _outlive_zygote(pid: int) -> int:
    """The zygote died while the child ran: the child lives on (it has its own session);
    wait for it, since its outcome is what the worker waits for. Its code is lost with
    the zygote, so report 1: Prefect decides from the run's own recorded state."""
    print("shipyard fork client: the zygote stopped; waiting for the run to end",
          file=sys.stderr, flush=True)
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return 1
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
