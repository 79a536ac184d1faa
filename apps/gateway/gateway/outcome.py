"""How one attempt ended, and what follows from it: retry, breaker verdict, client answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["IDEMPOTENT_METHODS", "RETRYABLE_STATUSES", "Failure", "Outcome", "RetryPolicy"]

# RFC 9110's idempotent methods: sending one twice has the effect of sending it once.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# The answers of a proxy or an overloaded instance, not of the application's logic.
RETRYABLE_STATUSES = frozenset({502, 503, 504})

Failure = Literal[
    "connect_error",  # no connection: the request never reached the instance
    "timeout",  # the total time budget ran out (connecting, sending or waiting)
    "protocol_error",  # the connection broke or the answer was not HTTP
    "too_large",  # the answer exceeded GATEWAY_MAX_RESPONSE_BYTES
    "rejected",  # the client's request cannot be sent as HTTP (the client's fault)
]


@dataclass(frozen=True)
class Outcome:
    """An attempt ended with an HTTP `status` from the instance, or with a `failure`."""

    status: int | None = None
    failure: Failure | None = None

    def __post_init__(self) -> None:
        if (self.status is None) == (self.failure is None):
            raise ValueError("an outcome has either a status or a failure")

    @property
    def label(self) -> str:
        """The metric label: the status code, or the failure's name."""
        return str(self.status) if self.status is not None else str(self.failure)

    @property
    def instance_failed(self) -> bool:
        """Whether this counts against the instance's circuit breaker: any 5xx, or any
        failure except a request the client made unsendable."""
        if self.status is not None:
            return self.status >= 500
        return self.failure != "rejected"


@dataclass(frozen=True)
class RetryPolicy:
    """Retry on another instance, at most `max_retries` times per request, only what is
    safe and likely to help: an idempotent method, and either no connection at all or a
    502/503/504. A timeout is not retried (the time budget is spent), nor is a POST or
    PATCH ever (the instance may have acted on it before failing)."""

    max_retries: int = 1

    def should_retry(self, method: str, outcome: Outcome, attempts: int) -> bool:
        """After `attempts` attempts (1 for the first), the last ending in `outcome`."""
        if attempts > self.max_retries or method.upper() not in IDEMPOTENT_METHODS:
            return False
        return outcome.failure == "connect_error" or outcome.status in RETRYABLE_STATUSES
