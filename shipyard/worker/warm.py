"""The Prefect worker type ``shipyard-warm``: a process worker whose flow runs start warm.

Prefect's process worker starts a new interpreter per flow run, which imports Prefect and
Shipyard again: two to six seconds before a stage runs. This worker keeps a zygote
(:mod:`shipyard.worker.zygote`) that has imported them once and forks it per run. Everything
else is the process worker's: the worker starts a process per run (the fork client, which
stands in for the forked child), tracks it, reports it crashed when it dies, and cancels
it by signal. The runs are ordinary Prefect flow runs, with their task runs and logs.

Two more things make a hand-over fast:
- The worker hears of new flow runs on Prefect's events websocket (a ``Scheduled`` state
  event of a run in its pool, whatever the state's name: ``Resuming`` for an answered
  judgment) and fetches them at once, instead of waiting for its next
  poll. Polling goes on as the safety net.
- The zygote is started with the worker and restarted when it exits: when the checkout
  changed under it, it drains and the worker starts a fresh one at once.

Registered with Prefect through the ``prefect.collections`` entry point of this package,
so ``prefect worker start --type shipyard-warm`` and ``prefect work-pool create --type
shipyard-warm`` know it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.abc
from prefect.client.schemas.objects import FlowRun
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

from shipyard.worker import fork_client

__all__ = ["WARM_WORKER_TYPE", "WarmWorker", "ZygoteProcess", "fork_command"]

WARM_WORKER_TYPE = "shipyard-warm"
RESTART_PAUSES = (0.0, 5.0, 15.0, 60.0)
"""Pauses before restarting a zygote that failed that many times in a row."""
WATCH_SECONDS = 1.0
ZYGOTE_IMPORT_GRACE_SECONDS = 120.0
"""A zygote that has not listened after this long is stuck: another replaces it."""
ZYGOTE_READY_SECONDS = 15.0
"""How long a run waits for a zygote that is still importing (3 to 5 s here) before it
starts cold."""
EVENT_RECONNECT_PAUSES = (1.0, 2.0, 5.0, 10.0)
FLOW_RUN_EVENT_PREFIX = "prefect.flow-run."


def fork_command(command: str | None) -> str | None:
    """The fork client's command line standing in for ``command`` when ``command`` runs a
    Python module with this interpreter (``python -m prefect.engine``); None for any other
    command, which then runs as it is."""
    parts = shlex.split(command or "")
    if len(parts) < 3 or parts[1] != "-m" or not Path(parts[0]).name.startswith("python"):
        return None
    return shlex.join([sys.executable, "-S", fork_client.__file__, *parts[1:]])


@dataclass
class ZygoteProcess:
    """One zygote: its process, listening on a socket in a private directory of its own."""

    project: Path
    directory: Path = field(default_factory=lambda: Path(
        tempfile.mkdtemp(prefix="shipyard-zygote-")))
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    seen_listening: bool = False

    @property
    def socket_path(self) -> Path:
        return self.directory / "socket"

    async def start(self) -> None:
        self.started = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shipyard.worker.zygote", "--socket", str(self.socket_path),
            "--project", str(self.project), cwd=self.project, stdin=asyncio.subprocess.DEVNULL)
        # In the worker's process group: stopping the worker's group stops the zygote,
        # which stops its runs, as the stock worker's runs stop with its group.

    @property
    def exited(self) -> bool:
        return self.process is None or self.process.returncode is not None

    @property
    def listening(self) -> bool:
        listening = not self.exited and self.socket_path.exists()
        self.seen_listening = self.seen_listening or listening
        return listening

    async def stop(self, grace_seconds: float = 12.0) -> None:
        """End the zygote (it ends its children) and remove its directory."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace_seconds)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


class WarmWorker(ProcessWorker):
    """A process worker whose runs are forked from a warm zygote (see the module)."""

    type = WARM_WORKER_TYPE
    _description = ("Runs flow runs as processes forked from an interpreter that imported "
                    "Prefect and the flows already: a process worker without the startup.")
    _display_name = "Shipyard warm process"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._zygote: ZygoteProcess | None = None
        self._draining: list[ZygoteProcess] = []
        self._failures = 0
        self._background: list[asyncio.Task[None]] = []

    async def setup(self) -> None:
        await super().setup()
        await self._start_zygote()
        self._background = [asyncio.create_task(self._watch_zygote()),
                            asyncio.create_task(self._submit_when_scheduled())]

    async def teardown(self, *exc_info: Any) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for zygote in [*self._draining, *([self._zygote] if self._zygote else [])]:
            await zygote.stop()
        await super().teardown(*exc_info)

    async def run(self, flow_run: FlowRun, configuration: ProcessJobConfiguration,
                  task_status: anyio.abc.TaskStatus[int] | None = None,
                  ) -> ProcessWorkerResult:
        command = fork_command(configuration.command)
        if command is not None:
            configuration.command = command
            configuration._command_configured = True
            zygote = await self._listening_zygote()
            if zygote is not None:
                configuration.env[fork_client.SOCKET_ENV] = str(zygote.socket_path)
        return await super().run(flow_run, configuration, task_status)

    async def _listening_zygote(self) -> ZygoteProcess | None:
        """The zygote, once it listens: one still importing is waited for (it is ready
        sooner than a cold start would be); None when there is none to wait for."""
        deadline = time.monotonic() + ZYGOTE_READY_SECONDS
        while time.monotonic() < deadline:
            zygote = self._zygote
            if zygote is None or zygote.exited:
                return None
            if zygote.listening:
                return zygote
            await asyncio.sleep(0.05)
        return None

    async def _start_zygote(self) -> None:
        project = Path(os.environ.get("SHIPYARD_PROJECT_DIR") or os.getcwd())
        zygote = ZygoteProcess(project)
        await zygote.start()
        self._zygote = zygote

    async def _watch_zygote(self) -> None:
        """Keep a zygote listening: replace one that stopped listening (its source changed,
        so it drains its runs) or exited; back off when it keeps failing."""
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            for done in [z for z in self._draining if z.exited]:
                shutil.rmtree(done.directory, ignore_errors=True)
                self._draining.remove(done)
            zygote = self._zygote
            if zygote is None or zygote.listening:
                if zygote is not None:
                    self._failures = 0 if time.monotonic() - zygote.started > 60 \
                        else self._failures
                continue
            if not zygote.exited:
                if not zygote.seen_listening and \
                        time.monotonic() - zygote.started < ZYGOTE_IMPORT_GRACE_SECONDS:
                    continue  # still importing
                self._logger.info("The zygote stopped listening (its source changed, or it "
                                  "was told to stop); starting a fresh one")
                self._draining.append(zygote)
            else:
                code = zygote.process.returncode if zygote.process else None
                shutil.rmtree(zygote.directory, ignore_errors=True)
                if code != 0:
                    self._failures += 1
                    pause = RESTART_PAUSES[min(self._failures, len(RESTART_PAUSES) - 1)]
                    self._logger.warning("The zygote exited with %s; runs start cold until "
                                         "it is back (in %.0fs)", code, pause)
                    await asyncio.sleep(pause)
            await self._start_zygote()

    async def _submit_when_scheduled(self) -> None:
        """Fetch and submit flow runs the moment Prefect says one was scheduled, instead of
        at the next poll. Reconnects with backoff; polling covers any gap."""
        failures = 0
        # Named after the state's name, which is not always "Scheduled": a resumed
        # suspended run (an answered judgment) is "Resuming", a retry "AwaitingRetry".
        event_filter = EventFilter(event=EventNameFilter(prefix=[FLOW_RUN_EVENT_PREFIX]))
        while True:
            try:
                async with get_events_subscriber(filter=event_filter) as subscriber:
                    failures = 0
                    async for event in subscriber:
                        if event.resource.get("prefect.state-type") == "SCHEDULED" and \
                                self._in_my_pool(event.related):
                            await self.get_and_submit_flow_runs()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the server restarts, the socket drops
                pause = EVENT_RECONNECT_PAUSES[min(failures, len(EVENT_RECONNECT_PAUSES) - 1)]
                failures += 1
                self._logger.debug("The events subscription ended (%s); again in %.0fs",
                                   err, pause)
                await asyncio.sleep(pause)

    def _in_my_pool(self, related: Any) -> bool:
        pool = self.work_pool
        if pool is None:
            return False
        wanted = f"prefect.work-pool.{pool.id}"
        return any(resource.id == wanted for resource in related)
