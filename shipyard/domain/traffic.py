"""What a load generator saw, judged: failure ratios, latency quantiles, which version
answered, and how long a traffic flip took.

Samples are plain data (``shipyard.adapters.load`` makes them), so the red/black and
rollback measurements are functions over lists that tests can write by hand.

Times are seconds since the load started. A window ``start``/``end`` selects the samples
*sent* in ``[start, end)``: when a request was sent, not when it was answered, decides
which side of an event it belongs to, since a slow answer to a request sent before a
switch says nothing about the routing after it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Sample", "TrafficSummary", "share_of", "summarize", "switch_time"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One request of a load run.

    ``started`` is when it was sent, in seconds since the load started; ``latency`` is
    how long it took to its end (an answer, an error or the timeout); ``status`` is the
    HTTP status, or 0 when no answer came (connection refused or reset, timeout);
    ``version`` is the ``"version"`` key of a JSON object body, or "" when there was none.
    """

    started: float
    latency: float
    status: int
    version: str = ""

    @property
    def answered(self) -> bool:
        """Whether an HTTP answer came back, whatever its status."""
        return self.status != 0

    @property
    def failed(self) -> bool:
        """No answer, or a 5xx."""
        return self.status == 0 or self.status >= 500


@dataclass(frozen=True, slots=True)
class TrafficSummary:
    """Counts and latencies of the samples sent in a window.

    ``failure_ratio`` is ``failures / requests`` (0.0 with no requests). The latency
    quantiles are over the answered requests only (a refused connection fails in
    microseconds and would flatter the tail), by nearest rank: the smallest latency with
    at least that share of answered requests at or below it; None with no answers.
    ``versions`` counts answered requests by the version they named ("" for none).
    """

    requests: int
    failures: int
    failure_ratio: float
    p50: float | None
    p95: float | None
    p99: float | None
    versions: Mapping[str, int] = field(default_factory=dict)


def summarize(samples: Iterable[Sample], *, start: float | None = None,
              end: float | None = None) -> TrafficSummary:
    """Summarize the samples sent in ``[start, end)`` (an open side when None)."""
    chosen = _window(samples, start, end)
    failures = sum(1 for s in chosen if s.failed)
    latencies = sorted(s.latency for s in chosen if s.answered)
    return TrafficSummary(
        requests=len(chosen),
        failures=failures,
        failure_ratio=failures / len(chosen) if chosen else 0.0,
        p50=_nearest_rank(latencies, 0.50),
        p95=_nearest_rank(latencies, 0.95),
        p99=_nearest_rank(latencies, 0.99),
        versions=dict(Counter(s.version for s in chosen if s.answered)),
    )


def share_of(samples: Iterable[Sample], version: str, *, start: float | None = None,
             end: float | None = None) -> float:
    """The share of the answered requests sent in ``[start, end)`` that ``version``
    answered; 0.0 when none was answered."""
    answered = [s for s in _window(samples, start, end) if s.answered]
    if not answered:
        return 0.0
    return sum(1 for s in answered if s.version == version) / len(answered)


def switch_time(samples: Iterable[Sample], version: str, *, after: float,
                threshold: float = 0.99, window: int = 20) -> float | None:
    """Seconds from ``after`` until traffic settled on ``version``, or None if it never did.

    Take the answered requests sent at or after ``after``, in the order they were sent:
    a_0, a_1, ..., a_(n-1). A window is ``window`` consecutive ones, a_j ... a_(j+window-1);
    it *holds* when at least ``threshold`` of them were answered by ``version``. The switch
    point is the first a_i answered by ``version`` such that every window starting at a_i
    or later holds; the result is ``a_i.started - after``.

    So a straggler of the old version inside the last window that fails pushes the point
    past it, while stragglers a window tolerates do not (with the defaults, 0.99 of 20
    tolerates none). Failed connections (status 0) carry no version and are not part of
    the sequence: whether requests failed during the switch is ``summarize``'s question.
    None when fewer than ``window`` requests were answered after ``after`` (too few to
    judge) or when the last window does not hold (traffic had not settled when the samples
    end).
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], not {threshold}")
    answered = sorted((s for s in samples if s.answered and s.started >= after),
                      key=lambda s: s.started)
    if len(answered) < window:
        return None
    on = [s.version == version for s in answered]
    needed = math.ceil(threshold * window - 1e-9)
    # Walk the windows from the last one back: the earliest start of an unbroken run of
    # holding windows that reaches the end is where traffic settled.
    hits = sum(on[-window:])
    earliest: int | None = None
    for j in range(len(on) - window, -1, -1):
        if j < len(on) - window:
            hits += on[j] - on[j + window]
        if hits < needed:
            break
        earliest = j
    if earliest is None:
        return None
    first_on = next(i for i in range(earliest, len(on)) if on[i])
    return answered[first_on].started - after


def _window(samples: Iterable[Sample], start: float | None,
            end: float | None) -> Sequence[Sample]:
    return [s for s in samples
            if (start is None or s.started >= start) and (end is None or s.started < end)]


def _nearest_rank(ordered: Sequence[float], quantile: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(math.ceil(quantile * len(ordered)) - 1, 0)]
