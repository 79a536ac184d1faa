"""The deploy lock stage: one deploy per app and environment at a time (Spinnaker's
"disable concurrent pipeline executions", per target rather than per pipeline).

A delivery takes every (app, environment) lock it needs before it touches anything, or
none. While another live run holds one, it waits its turn, as Spinnaker queues a
pipeline whose concurrent executions are disabled: it gives back what it took, says in
its log which run it waits for, and tries again every second, for at most
``SHIPYARD_LOCK_WAIT_SECONDS``; past that the stage fails with ``DeployInProgress``,
naming the holder. A promote and a rollback fired at the same moment so run one after
the other, and the later one acts on what the earlier one left. The locks are given back
by :func:`release_locks` once the switches are done (a rollback may run during the warm
window) or the delivery has failed and rolled back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from shipyard.store import DeployLocks, Store
from stages.runtime import RunContext, StageContext, StageFailure, StageResult, open_store, stage

__all__ = ["LOCK_REFUSED", "LocksResult", "hold_locks", "release_locks", "take_deploy_locks"]

LOCK_REFUSED = "DeployInProgress"
LOCK_POLL_SECONDS = 1.0


class LocksResult(StageResult):
    """The locks the run holds, as ``app/environment``."""

    taken: list[str]
    waited_seconds: float = 0.0  # for other runs to give the locks back

    def summary(self) -> str:
        waited = (f" (waited {self.waited_seconds:.0f}s for other runs)"
                  if self.waited_seconds >= 1 else "")
        return f"holds the deploy locks of {', '.join(self.taken)}{waited}"


# Not reusable: a lock is held by a live run, never inherited from an ended one.
@stage("locks", reusable=False)
async def take_deploy_locks(ctx: StageContext, pairs: list[tuple[str, str]]) -> LocksResult:
    """Take the lock of every (app, environment) in ``pairs`` for this run, or none,
    waiting for the runs that hold them (see the module's docstring)."""
    waited = await hold_locks(ctx, pairs)
    return LocksResult(taken=[f"{app}/{env}" for app, env in pairs], waited_seconds=waited)


async def hold_locks(ctx: StageContext, pairs: Sequence[tuple[str, str]]) -> float:
    """Take the lock of every (app, environment) in ``pairs`` for the stage's run, or
    none, waiting while live runs hold them, up to ``SHIPYARD_LOCK_WAIT_SECONDS``:
    :class:`StageFailure` (``DeployInProgress``) names the run that still holds one.
    Returns the seconds waited."""
    limit = ctx.settings.lock_wait_seconds
    began = time.monotonic()
    told = ""
    while True:
        refusal = await asyncio.to_thread(_take_all, ctx.store, pairs, ctx.run_id)
        waited = time.monotonic() - began
        if refusal is None:
            if told:
                await ctx.log(f"took the deploy locks after waiting {waited:.0f}s")
            return waited
        if waited >= limit:
            raise StageFailure(LOCK_REFUSED, f"{refusal}; one deploy per app and environment "
                               f"at a time, and it did not end within {limit:.0f}s "
                               "(SHIPYARD_LOCK_WAIT_SECONDS): wait for it to end, or "
                               "cancel it")
        if refusal != told:
            await ctx.log(f"waiting for its turn (up to {limit:.0f}s): {refusal}")
            await ctx.flush()
            told = refusal
        await asyncio.sleep(LOCK_POLL_SECONDS)


def _take_all(store: Store, pairs: Sequence[tuple[str, str]], run_id: str) -> str | None:
    """Take every lock of ``pairs`` for ``run_id`` and return None, or take none and
    say which run holds which."""
    locks = DeployLocks(store)
    taken: list[tuple[str, str]] = []
    for app, env in pairs:
        holder = locks.acquire(app, env, run_id)
        if holder is None:
            taken.append((app, env))
            continue
        _release(store, taken, run_id)
        other = store.get_run(holder)
        return (f"{app} in {env} is being deployed by {other.pipeline} run "
                f"{other.short_id} ({other.state.value})")
    return None


async def release_locks(run: RunContext, pairs: Sequence[tuple[str, str]]) -> None:
    """Give back the locks of ``pairs`` that ``run`` holds."""
    store = await asyncio.to_thread(open_store)
    await asyncio.to_thread(_release, store, pairs, run.run_id)


def _release(store: Store, pairs: Sequence[tuple[str, str]], run_id: str) -> None:
    locks = DeployLocks(store)
    for app, env in pairs:
        locks.release(app, env, run_id)
