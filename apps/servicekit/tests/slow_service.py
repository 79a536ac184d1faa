"""A service for test_servicekit_server, run as a real process.

GET /slow answers only once the file RELEASE_FILE exists, so the test decides when the
in-flight request may finish; GET /entered says whether /slow has been entered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from servicekit import ServiceConfig, build_service, serve, service_state

log = logging.getLogger("slow")


@contextlib.asynccontextmanager
async def announce_shutdown(_: FastAPI) -> AsyncIterator[None]:
    yield
    log.info("lifespan shutdown")


def main() -> None:
    release = Path(os.environ["RELEASE_FILE"])
    config = ServiceConfig.from_env()
    app = build_service("slow", config, lifespans=[announce_shutdown])
    entered = asyncio.Event()

    async def note_drain() -> None:
        log.info("drain hook ran")

    service_state(app).on_drain("note", note_drain)

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        entered.set()
        while not release.exists():
            await asyncio.sleep(0.01)
        log.info("slow request finished")
        return {"done": True}

    @app.get("/entered")
    async def was_entered() -> dict[str, bool]:
        return {"entered": entered.is_set()}

    serve(app, config)


if __name__ == "__main__":
    main()
