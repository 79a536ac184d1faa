"""Serving with a graceful shutdown that Kubernetes can route around.

On SIGTERM (or SIGINT) the kubelet has only just started removing the pod from the
Service's endpoints; kube-proxies and clients learn of it over the next seconds. So:

1. readiness turns false and the drain hooks run (e.g. leave the service registry), while
   the server keeps accepting and serving for DRAIN_SECONDS: late enough that every
   router has stopped sending traffic, early enough to fit the termination grace period;
2. the server stops accepting connections and waits up to SHUTDOWN_TIMEOUT_SECONDS for
   in-flight requests to finish (uvicorn's graceful shutdown);
3. the lifespan shutdown runs (e.g. deregister, close clients), and the process exits 0.

A second signal skips the rest of the drain; uvicorn's own rules apply from there.
DRAIN_SECONDS + SHUTDOWN_TIMEOUT_SECONDS must stay below terminationGracePeriodSeconds.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import Callable, Mapping
from types import FrameType

import uvicorn
from fastapi import FastAPI

from servicekit.app import service_state
from servicekit.config import ServiceConfig
from servicekit.lifecycle import ServiceState
from servicekit.logs import configure_logging

__all__ = ["DrainingServer", "run_service", "serve"]

logger = logging.getLogger("servicekit.server")


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first exit signal starts a drain instead of a shutdown.

    The signal handler only records the request; the drain starts on uvicorn's next
    main-loop tick (every 0.1 s), inside the event loop, where it is safe to run hooks.
    """

    def __init__(self, config: uvicorn.Config, state: ServiceState, drain_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config)
        self.state = state
        self.drain_seconds = drain_seconds
        self.clock = clock
        self.drain_requested = False
        self.drain_deadline: float | None = None
        self._drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.drain_requested and not self.should_exit:
            # Deliberately not recorded as a captured signal: after a graceful shutdown
            # the process exits 0 instead of re-raising the signal at itself.
            self.drain_requested = True
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_requested and self.drain_deadline is None:
            logger.info("exit signal received: readiness is false; serving for %s s more "
                        "so endpoints drop this instance", self.drain_seconds)
            self.drain_deadline = self.clock() + self.drain_seconds
            self._drain_task = asyncio.create_task(self.state.begin_drain())
        if (self.drain_deadline is not None and not self.should_exit
                and self.clock() >= self.drain_deadline):
            logger.info("drain over: no new connections; finishing in-flight requests")
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._drain_task is not None:
            # Hooks are bounded by their own timeout; let them finish before lifespan
            # shutdown repeats their work (e.g. a second deregistration).
            await self._drain_task
        await super().shutdown(sockets)


def serve(app: FastAPI, config: ServiceConfig) -> None:
    """Serve `app` (made by build_service) on config.host:config.port until SIGTERM or
    SIGINT, then shut down gracefully as the module docstring describes. Logs go to
    stderr as JSON lines; uvicorn's own access log is off (TelemetryMiddleware logs).
    Exits with status 3 if the app's lifespan startup fails."""
    state = service_state(app)
    configure_logging(state.name, config.app_version, level=config.log_level)
    server = DrainingServer(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
            timeout_graceful_shutdown=config.shutdown_timeout_seconds,
        ),
        state,
        config.drain_seconds,
    )
    server.run()


def run_service(build: Callable[[ServiceConfig], FastAPI], *, default_port: int,
                env: Mapping[str, str] | None = None) -> None:
    """An app's `main`: read ServiceConfig from the environment (PORT defaulting to
    `default_port`), build the app with `build(config)`, serve it. A configuration error
    (ValueError from either step) exits 2 with its message on stderr, no traceback."""
    try:
        config = ServiceConfig.from_env(env, default_port=default_port)
        app = build(config)
    except ValueError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    serve(app, config)
