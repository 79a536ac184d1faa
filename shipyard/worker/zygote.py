"""The zygote: an interpreter that imported Prefect, Shipyard and the pipelines once, and
forks a child per flow run, which then runs ``python -m prefect.engine`` as a fresh process
would, minus the two seconds of imports.

Fork-after-import is safe only for a process that holds nothing a child must not share.
The zygote proves it before every fork instead of hoping: it runs one thread (counted in
``/proc/self/task``, which sees threads that ``threading`` does not), no event loop, and
no open descriptor but its own listening and client sockets, its selector and its wakeup
pipe (``/proc/self/fd``), all of which the child closes. A zygote that finds itself unsafe
refuses every request, and the fork client then starts the run cold.

Its source is the checkout it imported. When any imported file of the project changes, a
fork would run old code, so it refuses from then on, stops listening and exits once its
last child has ended; the worker starts a new one.

Run as ``python -m shipyard.worker.zygote --socket PATH --project DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.worker.wire import Exited, Forked, ForkRequest, Refused, WireError, receive, send

__all__ = ["PRELOADED_MODULES", "Zygote", "main", "unsafe_to_fork"]

PRELOADED_MODULES = (
    "prefect",
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.deployments.steps",
    "prefect.deployments.steps.core",
    "prefect.runner.storage",
    "prefect.logging.handlers",
    "prefect.client.orchestration",
    "prefect.events.clients",
    "prefect.input.run_input",
    "prefect.flow_runs",
)
"""What ``python -m prefect.engine`` imports before it runs a flow; the pipelines (and
through them Shipyard) are added from the project's ``pipelines`` folder."""

SOURCE_CHECK_SECONDS = 2.0
"""How often an idle zygote looks at its source's files (a few ms for a few thousand)."""


def unsafe_to_fork(own_fds: set[int]) -> str | None:
    """Why forking this process now would hand a child something shared, or None.

    ``own_fds`` are the descriptors the zygote itself holds open (the child closes them).
    """
    return thread_problem() or loop_problem() or descriptor_problem(own_fds)


def thread_problem() -> str | None:
    """More than one thread runs: a fork copies only the caller, so a lock another thread
    held stays held in the child forever."""
    threads = os.listdir("/proc/self/task")
    if len(threads) == 1:
        return None
    names = ", ".join(t.name for t in threading.enumerate())
    return f"{len(threads)} threads run (Python knows of: {names})"


def loop_problem() -> str | None:
    with contextlib.suppress(RuntimeError):
        import asyncio

        asyncio.get_running_loop()
        return "an event loop runs"
    return None


def descriptor_problem(own_fds: set[int]) -> str | None:
    """A descriptor open that the zygote did not open itself: an import opened a file,
    a connection or a pipe, so some object holds state a child would share."""
    foreign = []
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd <= 2 or fd in own_fds:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the descriptor listdir itself used, closed since
        foreign.append(f"{fd} -> {target}")
    if foreign:
        return "descriptors it did not open itself are open: " + "; ".join(foreign)
    return None


def preload(project: Path, modules: list[str] | None = None) -> list[str]:
    """Import ``modules`` (default: what a flow run of ``project`` imports); return them."""
    if modules is None:
        modules = list(PRELOADED_MODULES)
        modules += sorted(f"pipelines.{p.stem}" for p in (project / "pipelines").glob("*.py")
                          if p.stem != "__init__")
    for name in modules:
        importlib.import_module(name)
    # runpy warns when a module it runs as __main__ is already imported; the child drops
    # it and gets a fresh copy (a small file: the engine's imports stay loaded).
    sys.modules.pop("prefect.engine", None)
    return modules


def project_sources(project: Path) -> dict[str, int]:
    """The modification times of every imported file inside ``project``."""
    root = str(project.resolve()) + os.sep
    sources: dict[str, int] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.startswith(root):
            with contextlib.suppress(OSError):
                sources[path] = os.stat(path).st_mtime_ns
    return sources


@dataclass
class Zygote:
    """The fork server on ``socket_path``; :meth:`serve` runs until SIGTERM (its runs go
    on without it) or until its source changed and its last child ended."""

    socket_path: Path
    project: Path
    sources: dict[str, int] = field(default_factory=dict)
    children: dict[int, socket.socket] = field(default_factory=dict)
    forks: int = 0
    stale: str | None = None
    stopping: bool = False
    socket_inode: int = 0
    inherited_fds: set[int] = field(default_factory=set)
    """Open before the imports, so not theirs (a child closes them like all others)."""

    def serve(self) -> int:
        self.selector = selectors.DefaultSelector()
        self.listener = self._listen()
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        signal.set_wakeup_fd(wake_write.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(wake_read, selectors.EVENT_READ, "wake")
        self._wake = (wake_read, wake_write)
        print(f"zygote {os.getpid()} listening on {self.socket_path}", flush=True)
        next_source_check = time.monotonic() + SOURCE_CHECK_SECONDS
        while True:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        wake_read.recv(4096)
                else:
                    self._client_gone(key.data)
            self._reap()
            if self.stale is None and time.monotonic() >= next_source_check:
                # Between requests too, so the worker replaces a stale zygote before a
                # run would have to start cold.
                self._check_source()
                next_source_check = time.monotonic() + SOURCE_CHECK_SECONDS
            if self.stopping:
                # As the stock worker's runs outlive it (each in a session of its own),
                # so do these: each client waits for its run, which goes on alone.
                print(f"zygote {os.getpid()} exits after {self.forks} forks; "
                      f"{len(self.children)} runs go on without it", flush=True)
                return 0
            if self.stale and not self.children:
                print(f"zygote {os.getpid()} exits after {self.forks} forks ({self.stale})",
                      flush=True)
                return 0

    def _listen(self) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # only the worker's user may ask for a fork
        try:
            listener.bind(str(self.socket_path))
        finally:
            os.umask(old_umask)
        listener.listen(64)
        listener.setblocking(False)
        self.socket_inode = os.stat(self.socket_path).st_ino
        return listener

    def _stop(self, *_: object) -> None:
        self.stopping = True
        self._stop_listening()

    def _stop_listening(self) -> None:
        if self.listener.fileno() < 0:
            return
        self.selector.unregister(self.listener)
        # Only our own socket file: a successor may already listen at the same path.
        with contextlib.suppress(OSError):
            if os.stat(self.socket_path).st_ino == self.socket_inode:
                self.socket_path.unlink()
        self.listener.close()

    def _own_fds(self) -> set[int]:
        fds = {key.fd for key in self.selector.get_map().values()}
        fds |= {conn.fileno() for conn in self.children.values()}
        fds |= {self.selector.fileno(), self._wake[1].fileno()}
        if self.listener.fileno() >= 0:
            fds.add(self.listener.fileno())
        return fds

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(True)
        conn.settimeout(5)  # a client sends its request at once
        fds: list[int] = []
        try:
            request, fds = receive(conn, with_fds=True)
            if not isinstance(request, ForkRequest) or len(fds) != 3:
                raise WireError("expected a fork request with three descriptors")
            refusal = self._refusal(extra_fds={conn.fileno(), *fds})
            if refusal is not None:
                send(conn, Refused(refusal))
                conn.close()
                return
            pid = self._fork(request, fds, conn)
        except (OSError, WireError) as err:
            print(f"zygote: a bad request: {err}", flush=True)
            conn.close()
            return
        finally:
            for fd in fds:
                os.close(fd)
        conn.settimeout(None)
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)
        send(conn, Forked(pid))

    def _check_source(self) -> None:
        changed = [path for path, mtime in self.sources.items() if _mtime(path) != mtime]
        if changed:
            self.stale = f"its source changed ({len(changed)} files, {changed[0]} first)"
            self._stop_listening()

    def _refusal(self, extra_fds: set[int]) -> str | None:
        if self.stale is None:
            self._check_source()
        if self.stale is not None:
            return self.stale
        if self.stopping:
            return "it is stopping"
        return unsafe_to_fork(self._own_fds() | extra_fds | self.inherited_fds)

    def _fork(self, request: ForkRequest, fds: list[int], conn: socket.socket) -> int:
        self.forks += 1
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns here
            _become_child(request, fds, self.forks)
        return pid

    def _client_gone(self, pid: int) -> None:
        """The client's connection became readable: a client sends nothing after its
        request, so it hung up (it was killed, or its worker stopped). Its run goes too."""
        conn = self.children.get(pid)
        if conn is None:
            return
        self.selector.unregister(conn)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(conn)
            with contextlib.suppress(OSError):
                send(conn, Exited(status))
            conn.close()


def _become_child(request: ForkRequest, fds: list[int], serial: int) -> None:
    """In the forked child: take the client's streams, environment and directory, shed
    everything of the zygote's, and run the request's module or script as __main__."""
    code = 1
    try:
        os.setsid()  # cancelling the run signals its group, never the zygote's
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        _retitle(request, serial)
        os.chdir(request.cwd)
        os.environ.clear()
        os.environ.update(request.env)
        _reopen_std_streams()
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
        code = _run_main(request.argv)
    except SystemExit as exit_:
        code = _exit_code(exit_)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        _exit(code)


def _run_main(argv: list[str]) -> int:
    import runpy

    try:
        if argv[:1] == ["-m"]:
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exit_:
        return _exit_code(exit_)
    return 0


def _exit_code(exit_: SystemExit) -> int:
    if exit_.code is None:
        return 0
    if isinstance(exit_.code, int):
        return exit_.code
    print(exit_.code, file=sys.stderr)
    return 1


def _exit(code: int) -> None:
    """Leave as Python would (atexit handlers: Prefect flushes its logs there), but never
    back into the zygote's loop."""
    import atexit

    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(code)


def _retitle(request: ForkRequest, serial: int) -> None:
    """Name the child like the command it stands for, with its flow run's id, so ``ps``
    and anything that looks for a run's processes find it. Before the environment is
    replaced: setproctitle may take over the memory of the original environment."""
    with contextlib.suppress(ImportError):
        from setproctitle import setproctitle

        run = request.env.get("PREFECT__FLOW_RUN_ID", "")
        setproctitle(f"{sys.executable} {' '.join(request.argv)} PREFECT__FLOW_RUN_ID={run} "
                     f"(forked by the shipyard zygote, run {serial})")


def _reopen_std_streams() -> None:
    """sys.stdout and sys.stderr were the zygote's buffered files on descriptors 1 and 2;
    those now point at the client's streams, so only their buffers must go."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = open(fd, "w", buffering=1, closefd=False, encoding="utf-8",  # noqa: SIM115
                      errors="backslashreplace")
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
    sys.stdin = open(0, closefd=False, encoding="utf-8")  # noqa: SIM115


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _end_with_parent() -> None:
    """Ask Linux for SIGTERM when the worker that started the zygote dies, even by
    SIGKILL: a zygote without its worker would only hold memory."""
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--project", required=True, type=Path)
    parser.add_argument("--preload", action="append", metavar="MODULE",
                        help="import this module (repeat) instead of Prefect's engine and "
                        "the project's pipelines")
    args = parser.parse_args(argv)
    # OpenBLAS (under numpy, under the canary judge) starts a thread pool when it loads;
    # one thread computes the judge's sizes as fast, and keeps the zygote single-threaded.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    _end_with_parent()
    started = time.monotonic()
    inherited = {int(fd) for fd in os.listdir("/proc/self/fd")}
    modules = preload(args.project, args.preload)
    zygote = Zygote(args.socket, args.project, sources=project_sources(args.project),
                    inherited_fds=inherited)
    print(f"zygote imported {len(modules)} modules ({len(sys.modules)} in all) in "
          f"{time.monotonic() - started:.2f}s; watching {len(zygote.sources)} source files",
          flush=True)
    return zygote.serve()


if __name__ == "__main__":
    sys.exit(main())
