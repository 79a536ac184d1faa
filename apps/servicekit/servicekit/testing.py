"""Test helpers for servicekit and the apps built on it.

`running_server` serves an app in a background thread, for tests that need the wire (a
discovery client against a real discovery, a gateway against real backends) rather than
an in-process ASGI transport. `module_process` and `run_module` run an app as its
deployment does, `python -m <app>` in a process of its own, for tests of what only a
process shows: signals, exit codes and the log lines on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from starlette.types import ASGIApp

from servicekit.config import ServiceConfig

__all__ = [
    "FakeClock",
    "ModuleProcess",
    "config_for_tests",
    "eventually",
    "free_port",
    "module_process",
    "run_module",
    "running_server",
]

T = TypeVar("T")
# What a child process keeps of this one's environment: enough to run Python, and nothing
# a service reads, so a developer's PORT or DATABASE_URL cannot change what a test sees.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


class FakeClock:
    """A clock that moves only when the test moves it: `now` is what a call returns."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    """A TCP port free on the loopback interface now (the OS's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eventually(condition: Callable[[], T], what: str, seconds: float = 5.0,
               interval: float = 0.01) -> T:
    """Poll `condition` until it returns something truthy, and return that. Raises
    AssertionError naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(interval)
    return result


def config_for_tests(env: Mapping[str, str] | None = None, *, default_port: int = 8080,
                     **variables: str) -> ServiceConfig:
    """ServiceConfig.from_env over `env` plus `variables` (never os.environ), with the
    host name pinned to "test-instance" and the pod IP to "10.1.2.3"."""
    return ServiceConfig.from_env({**(env or {}), **variables}, default_port=default_port,
                                  hostname=lambda: "test-instance",
                                  primary_address=lambda: "10.1.2.3")


@contextlib.contextmanager
def running_server(app: ASGIApp, host: str = "127.0.0.1", port: int = 0,
                   startup_timeout: float = 10.0) -> Iterator[str]:
    """Serve `app` (lifespan included) until the block ends; yield its base URL.

    Port 0 picks a free port. Raises RuntimeError if the server has not started within
    `startup_timeout` seconds (its lifespan failed, or the port was taken).
    """
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    # Signal handlers can only be installed from the main thread; uvicorn skips them here.
    thread = threading.Thread(target=server.run, name=f"uvicorn-{host}:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn on {host}:{port} did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{f'[{host}]' if ':' in host else host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(startup_timeout)


class ModuleProcess:
    """A `python -m <module>` process started by `module_process`, serving at `base_url`.

    A thread collects its stderr line by line as it comes (so a chatty process never
    blocks on a full pipe); `log_entries()` parses those lines as servicekit's JSON logs.
    """

    def __init__(self, popen: subprocess.Popen[str], base_url: str) -> None:
        self.popen = popen
        self.base_url = base_url
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    @property
    def stderr(self) -> str:
        return "\n".join(list(self.lines))

    def log_entries(self) -> list[dict[str, Any]]:
        """Every stderr line so far as a JSON object; a line that is not JSON raises."""
        return [json.loads(line) for line in list(self.lines)]

    def send_signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for the exit and the end of stderr; return the exit status."""
        status = self.popen.wait(timeout)
        self._reader.join(timeout)
        return status

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, as Kubernetes stops a pod; return the exit status."""
        self.popen.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self, timeout: float = 20.0) -> None:
        """SIGKILL: no shutdown code runs, as when a node dies."""
        self.popen.kill()
        self.wait(timeout)

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.lines.append(line.rstrip("\n"))


def _module_env(app_dir: Path, env: Mapping[str, str]) -> dict[str, str]:
    # The app's package from app_dir and servicekit from the folder this copy was imported
    # from: the child runs the code under test, whatever is installed.
    kit = Path(__file__).resolve().parents[1]
    inherited = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    return {**inherited, "PYTHONPATH": os.pathsep.join([str(app_dir), str(kit)]), **env}


@contextlib.contextmanager
def module_process(module: str, app_dir: Path, env: Mapping[str, str] | None = None,
                   port: int | None = None, *, cwd: Path | None = None,
                   ready_path: str = "/readyz",
                   startup_timeout: float = 20.0) -> Iterator[ModuleProcess]:
    """Run `python -m module` with `app_dir` and servicekit on its PYTHONPATH, listening
    on 127.0.0.1:`port` (a free one by default) with DRAIN_SECONDS=0, plus `env`, which
    may override those. The child inherits nothing else of this environment but PATH,
    HOME, the locale and TMPDIR.

    Yields once GET `ready_path` answers 200; raises RuntimeError, with the process's
    stderr, if it exits first or `startup_timeout` passes. A process still running when
    the block ends is killed.
    """
    port = free_port() if port is None else port
    variables = {"HOST": "127.0.0.1", "PORT": str(port), "DRAIN_SECONDS": "0", **(env or {})}
    popen = subprocess.Popen([sys.executable, "-m", module], cwd=cwd,
                             env=_module_env(app_dir, variables), stderr=subprocess.PIPE,
                             text=True)
    process = ModuleProcess(popen, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + startup_timeout
        while not _answers_200(process.base_url + ready_path):
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"python -m {module} did not answer {ready_path} with 200 "
                                   f"(exit status {popen.poll()}):\n{process.stderr}")
            time.sleep(0.02)
        yield process
    finally:
        if popen.poll() is None:
            process.kill()
        else:
            process.wait()


def run_module(module: str, app_dir: Path, env: Mapping[str, str] | None = None, *,
               cwd: Path | None = None, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run `python -m module` (environment as for `module_process`, without the defaults)
    to its exit, e.g. to see a bad setting refused: the result has `returncode` and
    `stderr`. Killed after `timeout` seconds (subprocess.TimeoutExpired)."""
    return subprocess.run([sys.executable, "-m", module], cwd=cwd,
                          env=_module_env(app_dir, env or {}), capture_output=True, text=True,
                          timeout=timeout, check=False)


def _answers_200(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False
