"""The deploy lock stage: one deploy per app and environment at a time (Spinnaker's
"disable concurrent pipeline executions", per target rather than per pipeline).

A delivery takes every (app, environment) lock it needs before it touches anything, or
none: a refusal gives back what it took and fails the stage with ``DeployInProgress``,
naming the run that holds the lock. The locks are given back by :func:`release_locks`
once the switches are done (a rollback may run during the warm window) or the delivery
has failed and rolled back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from shipyard.store import DeployLocks, Store
from stages.runtime import RunContext, StageContext, StageFailure, StageResult, open_store, stage

__all__ = ["LOCK_REFUSED", "LocksResult", "hold_locks", "release_locks", "take_deploy_locks"]

LOCK_REFUSED = "DeployInProgress"


class LocksResult(StageResult):
    """The locks the run holds, as ``app/environment``."""

    taken: list[str]

    def summary(self) -> str:
        return f"holds the deploy locks of {', '.join(self.taken)}"


# Not reusable: a lock is held by a live run, never inherited from an ended one.
@stage("locks", reusable=False)
async def take_deploy_locks(ctx: StageContext, pairs: list[tuple[str, str]]) -> LocksResult:
    """Take the lock of every (app, environment) in ``pairs`` for this run, or none."""
    await asyncio.to_thread(hold_locks, ctx.store, pairs, ctx.run_id)
    return LocksResult(taken=[f"{app}/{env}" for app, env in pairs])


def hold_locks(store: Store, pairs: Sequence[tuple[str, str]], run_id: str) -> None:
    """Take the lock of every (app, environment) in ``pairs`` for ``run_id``, or none:
    :class:`StageFailure` (``DeployInProgress``) names the run that holds one."""
    locks = DeployLocks(store)
    taken: list[tuple[str, str]] = []
    for app, env in pairs:
        holder = locks.acquire(app, env, run_id)
        if holder is None:
            taken.append((app, env))
            continue
        _release(store, taken, run_id)
        other = store.get_run(holder)
        raise StageFailure(LOCK_REFUSED,
                           f"{app} in {env} is being deployed by {other.pipeline} run "
                           f"{other.short_id} ({other.state.value}); one deploy per app and "
                           "environment at a time: wait for it to end, or cancel it")


async def release_locks(run: RunContext, pairs: Sequence[tuple[str, str]]) -> None:
    """Give back the locks of ``pairs`` that ``run`` holds."""
    store = await asyncio.to_thread(open_store)
    await asyncio.to_thread(_release, store, pairs, run.run_id)


def _release(store: Store, pairs: Sequence[tuple[str, str]], run_id: str) -> None:
    locks = DeployLocks(store)
    for app, env in pairs:
        locks.release(app, env, run_id)
