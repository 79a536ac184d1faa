"""The chaos stage waits for its windows on the monotonic clock it is given, so a test can
move time instead of sleeping through an experiment."""

from __future__ import annotations

import asyncio
import time
from typing import cast

from shipyard.adapters.load import LoadRun
from stages.chaos import _until


class LoadStartedAt:
    """What the wait reads of a load run: when it started."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at

    def since_start(self, moment: float) -> float:
        return moment - self.started_at


def test_a_window_already_over_on_the_injected_clock_is_not_waited_for():
    started = time.monotonic()
    run = cast(LoadRun, LoadStartedAt(started))
    # An hour after the start: an hour away on the real clock, past on the given one.
    asyncio.run(asyncio.wait_for(_until(run, 3600.0, now=lambda: started + 3600.5),
                                 timeout=1.0))
