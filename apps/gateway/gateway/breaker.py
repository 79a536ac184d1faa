"""A per-instance circuit breaker: stop sending traffic to an instance that keeps failing,
then let a single probe find out whether it has recovered.

Pure logic over an injected clock, so tests move time instead of waiting for it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BreakerPolicy", "BreakerState", "CircuitBreaker", "Permit"]

Clock = Callable[[], float]


class BreakerState(StrEnum):
    CLOSED = "closed"  # traffic flows; failures are counted
    OPEN = "open"  # ejected until the cool-down ends
    HALF_OPEN = "half_open"  # cool-down over: the next request is a probe


@dataclass(frozen=True)
class BreakerPolicy:
    """When to open and for how long.

    The breaker opens after `consecutive_failures` failures in a row, or once the last
    `window` outcomes (a full window, so three early requests cannot trip it) hold a
    share of failures of at least `failure_ratio`. It stays open `cooldown_seconds`.
    """

    consecutive_failures: int = 5
    failure_ratio: float = 0.5
    window: int = 20
    cooldown_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1 or self.window < 1:
            raise ValueError("consecutive_failures and window must be at least 1")
        if not 0 < self.failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if self.cooldown_seconds <= 0:
            raise ValueError("cooldown_seconds must be greater than 0")


@dataclass(frozen=True)
class Permit:
    """Leave to send one request; `probe` marks the single half-open trial request."""

    probe: bool


class CircuitBreaker:
    """closed -> open on too many failures; open -> half_open when the cool-down ends;
    half_open -> closed if the probe succeeds, -> open (a fresh cool-down) if it fails.

    Usage: `allows_request()` to filter candidates, `acquire()` for the chosen one, then
    exactly one of `record(permit, success)` or `release(permit)` when the attempt ends.
    While not closed only the probe's verdict counts: answers to requests sent before the
    breaker opened say nothing about the instance now.
    """

    def __init__(self, policy: BreakerPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self._opened_at: float | None = None
        self._probing = False
        self._consecutive = 0
        self._recent: deque[bool] = deque(maxlen=policy.window)  # True: a failure

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self._opened_at >= self.policy.cooldown_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allows_request(self) -> bool:
        """Whether a request may be sent now (no side effect)."""
        state = self.state
        return state is BreakerState.CLOSED or (state is BreakerState.HALF_OPEN
                                                and not self._probing)

    def acquire(self) -> Permit:
        """Take leave to send; raises RuntimeError if `allows_request()` is false."""
        if not self.allows_request():
            raise RuntimeError("the circuit is open: no request may be sent")
        if self.state is BreakerState.HALF_OPEN:
            self._probing = True
            return Permit(probe=True)
        return Permit(probe=False)

    def record(self, permit: Permit, success: bool) -> None:
        """The verdict on a request sent under `permit`."""
        if permit.probe:
            self._probing = False
            if success:
                self._close()
            else:
                self._open()
            return
        if self._opened_at is not None:
            return
        self._recent.append(not success)
        self._consecutive = 0 if success else self._consecutive + 1
        if self._consecutive >= self.policy.consecutive_failures or self._ratio_exceeded():
            self._open()

    def release(self, permit: Permit) -> None:
        """The attempt ended without a verdict (e.g. the client went away): free the probe
        slot so the next request can probe instead."""
        if permit.probe:
            self._probing = False

    def _ratio_exceeded(self) -> bool:
        if len(self._recent) < self.policy.window:
            return False
        return sum(self._recent) / len(self._recent) >= self.policy.failure_ratio

    def _open(self) -> None:
        self._opened_at = self.clock()
        self._consecutive = 0
        self._recent.clear()

    def _close(self) -> None:
        self._opened_at = None
        self._consecutive = 0
        self._recent.clear()
