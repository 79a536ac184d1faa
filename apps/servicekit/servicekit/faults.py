"""Fault injection: a build that fails on purpose, so delivery gates can prove they catch it.

The settings come from FAULT_* environment variables, overridden key by key by the file
FAULT_CONFIG_FILE names (a mounted ConfigMap). The file is re-read whenever it changes, so
a ConfigMap update turns faults on or off without a restart. Operational routes
(OPERATIONAL_PATHS) are never slowed or failed: a probe must report the service's real
state, and a scrape must keep measuring it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from servicekit.config import FAULT_KEYS, FaultConfig
from servicekit.metrics import ServiceMetrics
from servicekit.routes import OPERATIONAL_PATHS
from servicekit.watched_file import WatchedFile

__all__ = [
    "FaultInjectionMiddleware",
    "FaultPlan",
    "FaultSource",
    "parse_fault_file",
    "plan_faults",
]

logger = logging.getLogger("servicekit.faults")

Random = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def parse_fault_file(text: str) -> dict[str, str]:
    """Parse a fault file: a JSON object, or `KEY=value` lines (blank lines and `#`
    comments allowed). Keys must be FAULT_* names; raises ValueError naming a bad one."""
    values: dict[str, str] = {}
    if text.lstrip().startswith("{"):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"not valid JSON: {err}") from None
        if not isinstance(loaded, dict):
            raise ValueError("the JSON must be an object of FAULT_* keys")
        for key, value in loaded.items():
            # JSON true/false become the words the env parser accepts.
            values[key] = str(value).lower() if isinstance(value, bool) else str(value)
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"line {number} is not KEY=value: {line!r}")
            values[key.strip()] = value.strip()
    unknown = sorted(set(values) - set(FAULT_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; "
                         f"the known keys are {', '.join(FAULT_KEYS)}")
    return values


class FaultSource:
    """The fault settings in force now.

    `current()` returns `base` (from the environment) with the keys of the file at `path`
    laid over it, re-read when it changes (a WatchedFile): a missing file means "no
    overrides", an invalid one is logged and the last good settings stay in force.
    """

    def __init__(self, base: FaultConfig, path: Path | None = None) -> None:
        self.base = base
        self.path = path
        self._file = None if path is None else WatchedFile(
            path, lambda text: FaultConfig.from_env(parse_fault_file(text), base=base), base,
            what="fault file", logger=logger)

    def current(self) -> FaultConfig:
        return self.base if self._file is None else self._file.current()


@dataclass(frozen=True)
class FaultPlan:
    """What to do to one request: wait `delay_seconds`, then answer 500 if `fail`."""

    delay_seconds: float
    fail: bool


def plan_faults(config: FaultConfig, rand: Random) -> FaultPlan:
    """Draw one request's faults. `rand` returns floats in [0, 1): one draw decides the
    error, a second the jitter, so a scripted `rand` pins both."""
    fail = config.error_rate > 0 and rand() < config.error_rate
    delay_ms = config.latency_ms
    if config.latency_jitter_ms > 0:
        delay_ms += rand() * config.latency_jitter_ms
    return FaultPlan(delay_seconds=delay_ms / 1000, fail=fail)


class FaultInjectionMiddleware:
    """Apply `source`'s error and latency faults to every non-operational HTTP request,
    counting each injected fault in `metrics`. An injected error answers
    500 {"detail": "injected fault ..."} without calling the app."""

    def __init__(
        self,
        app: ASGIApp,
        source: FaultSource,
        metrics: ServiceMetrics,
        rand: Random = random.random,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.app = app
        self.source = source
        self.metrics = metrics
        self.rand = rand
        self.sleep = sleep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPERATIONAL_PATHS:
            await self.app(scope, receive, send)
            return
        config = self.source.current()
        if not (config.error_rate or config.latency_ms or config.latency_jitter_ms):
            await self.app(scope, receive, send)
            return
        plan = plan_faults(config, self.rand)
        if plan.delay_seconds > 0:
            self.metrics.fault_injected("latency")
            await self.sleep(plan.delay_seconds)
        if plan.fail:
            self.metrics.fault_injected("error")
            detail = f"injected fault (FAULT_ERROR_RATE={config.error_rate})"
            await JSONResponse({"detail": detail}, status_code=500)(scope, receive, send)
            return
        await self.app(scope, receive, send)

