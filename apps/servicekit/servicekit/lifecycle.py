"""A service's lifecycle: starting, ready, draining, stopped, and why it is not ready.

Readiness answers one question for Kubernetes: "send me traffic now?". It is false until
startup completes, while draining before shutdown, while FAULT_READINESS_FAIL is set and
while any readiness check fails. Liveness is a different question ("restart me?") and
never depends on any of these.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from servicekit.faults import FaultSource
from servicekit.metrics import ServiceMetrics

__all__ = ["DrainHook", "Readiness", "ReadinessCheck", "ServiceState"]

logger = logging.getLogger("servicekit.lifecycle")

DrainHook = Callable[[], Awaitable[None]]
_BUILT_IN = frozenset({"startup", "draining", "fault-injection"})


@dataclass(frozen=True)
class ReadinessCheck:
    """A named condition for readiness, e.g. "a required dependency is reachable".

    `probe` returns True when ready (it may be async). Raising, returning False or taking
    longer than `timeout_seconds` all count as not ready. It runs on every /readyz call, so
    it should read a state kept fresh elsewhere rather than do slow I/O itself.
    """

    name: str
    probe: Callable[[], bool | Awaitable[bool]]
    timeout_seconds: float = 1.0


@dataclass(frozen=True)
class Readiness:
    """`failed` maps each failing condition's name to the reason; ready iff it is empty."""

    failed: dict[str, str]

    @property
    def ready(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, object]:
        if self.ready:
            return {"ready": True, "detail": "ready"}
        reasons = "; ".join(f"{name}: {reason}" for name, reason in self.failed.items())
        return {"ready": False, "detail": f"not ready: {reasons}", "failed": self.failed}


class ServiceState:
    """What /readyz reports, and the hooks run when draining starts.

    `started` is set by the app's lifespan once startup completes and cleared at shutdown;
    `begin_drain` is called by `serve` on SIGTERM.
    """

    def __init__(self, name: str, version: str, faults: FaultSource, metrics: ServiceMetrics,
                 checks: tuple[ReadinessCheck, ...] = ()) -> None:
        self.name = name
        self.version = version
        self.faults = faults
        self.metrics = metrics
        self.started = False
        self.draining = False
        self._checks: list[ReadinessCheck] = []
        self._drain_hooks: list[tuple[str, DrainHook]] = []
        for check in checks:
            self.add_readiness_check(check)

    def add_readiness_check(self, check: ReadinessCheck) -> None:
        """Also require `check` for readiness; names must be unique."""
        taken = _BUILT_IN | {c.name for c in self._checks}
        if check.name in taken:
            raise ValueError(f"readiness check name {check.name!r} is taken; pick another")
        self._checks.append(check)

    def on_drain(self, name: str, hook: DrainHook) -> None:
        """Run `hook` when draining starts (e.g. leave the service registry, so clients
        stop choosing this instance while it still serves the ones that already did)."""
        self._drain_hooks.append((name, hook))

    async def begin_drain(self, hook_timeout_seconds: float = 5.0) -> None:
        """Turn readiness false, then run the drain hooks in order. A failing or slow hook is
        logged and skipped: draining must go on whatever a hook does."""
        self.draining = True
        for name, hook in self._drain_hooks:
            try:
                await asyncio.wait_for(hook(), hook_timeout_seconds)
            except Exception:
                logger.exception("drain hook %r failed; draining goes on", name)

    async def readiness(self) -> Readiness:
        """Evaluate every condition (not only the first failing one), so the answer lists
        all that is wrong."""
        failed: dict[str, str] = {}
        if not self.started:
            failed["startup"] = "startup has not completed"
        if self.draining:
            failed["draining"] = "shutting down; draining in-flight requests"
        if self.faults.current().readiness_fail:
            self.metrics.fault_injected("readiness")
            failed["fault-injection"] = "FAULT_READINESS_FAIL is set"
        for check in self._checks:
            reason = await _run_check(check)
            if reason is not None:
                failed[check.name] = reason
        return Readiness(failed)


async def _run_check(check: ReadinessCheck) -> str | None:
    """None if the check passes, else why not."""
    try:
        if inspect.iscoroutinefunction(check.probe):
            outcome = await asyncio.wait_for(check.probe(), check.timeout_seconds)
        else:
            # A plain function may block (a database ping): it runs in a thread, so the
            # event loop keeps serving and the timeout holds.
            outcome = await asyncio.wait_for(asyncio.to_thread(check.probe),
                                             check.timeout_seconds)
            if inspect.isawaitable(outcome):
                outcome = await asyncio.wait_for(outcome, check.timeout_seconds)
    except TimeoutError:
        return f"no answer within {check.timeout_seconds} s"
    except Exception as err:
        return f"check raised {type(err).__name__}: {err}"
    return None if outcome is True else "check returned false"
