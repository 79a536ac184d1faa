"""Test helpers: a real uvicorn server on a free loopback port, in a background thread.

For tests that need the wire (a discovery client against a real discovery, a gateway
against real backends) rather than an in-process ASGI transport.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping

import uvicorn
from starlette.types import ASGIApp

from servicekit.config import ServiceConfig

__all__ = ["config_for_tests", "running_server"]


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
