"""What Prefect says of a flow run, read the way a test can trust.

The store records a run's end from inside the flow, a moment before the flow returns and
its engine tells Prefect's server the flow run is COMPLETED. A test that reads Prefect
right after the store's end can still see RUNNING, so it waits for a final state.
"""

from __future__ import annotations

import asyncio
import time

from shipyard.adapters.prefect import flow_run_state

__all__ = ["FINAL_STATES", "settled_prefect_state"]

FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


def settled_prefect_state(flow_run_id: str, *, seconds: float = 60) -> str:
    """The flow run's state type once it is final; after ``seconds``, whatever it is then
    (so the caller's assertion names the state it stayed in)."""
    deadline = time.monotonic() + seconds
    while True:
        state = asyncio.run(flow_run_state(flow_run_id)).state
        if state in FINAL_STATES or time.monotonic() > deadline:
            return state
        time.sleep(0.2)
