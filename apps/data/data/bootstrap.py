"""Starting without the database: create the schema as soon as it answers, and say
"not ready" until then and whenever it stops answering.

The process starts even when the database is down, rather than crash-looping: Kubernetes
then sees a live pod that is not ready (readiness names the reason) and sends it no
traffic, and the pod turns ready by itself once the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI
from servicekit import ReadinessCheck
from servicekit.background import in_background

from data.database import describe_error
from data.store import ActivityStore

__all__ = ["READINESS_TIMEOUT_SECONDS", "SchemaBootstrap"]

logger = logging.getLogger(__name__)

# Below the kubelet's default probe timeout (1 s), so a slow database reads as "not
# ready" with a reason rather than as a probe that timed out.
READINESS_TIMEOUT_SECONDS = 0.8


class SchemaBootstrap:
    """A lifespan that creates the schema, retrying with capped exponential backoff until
    it succeeds, and the readiness check that goes with it."""

    def __init__(self, store: ActivityStore, *, first_retry_seconds: float = 0.25,
                 max_retry_seconds: float = 5.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.store = store
        self.first_retry_seconds = first_retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self._sleep = sleep
        self.ready = False
        self.last_error: str | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        try:
            async with in_background(self._create_schema()):
                yield
        finally:
            self.store.close()

    def readiness_check(self) -> ReadinessCheck:
        return ReadinessCheck("database", self._probe, READINESS_TIMEOUT_SECONDS)

    async def _probe(self) -> bool:
        if not self.ready:
            raise RuntimeError(f"the schema is not created yet: {self.last_error or 'trying'}")
        return await asyncio.to_thread(self.store.ping)

    async def _create_schema(self) -> None:
        delay = self.first_retry_seconds
        while True:
            try:
                await asyncio.to_thread(self.store.ensure_schema)
            except Exception as err:
                self.last_error = describe_error(err)
                logger.warning("cannot create the schema (%s); retrying in %.2f s",
                               self.last_error, delay)
                await self._sleep(delay)
                delay = min(delay * 2, self.max_retry_seconds)
                continue
            self.ready, self.last_error = True, None
            logger.info("database schema is in place")
            return

