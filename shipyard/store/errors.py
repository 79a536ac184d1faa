"""Errors the store raises; each message names the problem and what to do about it."""

from __future__ import annotations

__all__ = ["AmbiguousRunId", "RunNotFound", "StageNotFound", "StoreError", "StoreTimedOut"]


class StoreError(Exception):
    """Base of the store's own errors."""


class StoreTimedOut(StoreError, TimeoutError):
    """The database did not accept a connection, or did not finish a query, within its
    deadline; the message says which deadline and how to change it."""


class RunNotFound(StoreError, LookupError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run matches {run_id!r}; `shipyard runs` lists recent runs")
        self.run_id = run_id


class AmbiguousRunId(StoreError, LookupError):
    def __init__(self, prefix: str, matches: list[str]) -> None:
        shown = ", ".join(m[:12] for m in matches[:5])
        super().__init__(
            f"run id {prefix!r} matches several runs ({shown}); give more characters"
        )
        self.prefix = prefix


class StageNotFound(StoreError, LookupError):
    def __init__(self, run_id: str, ref: str, known: list[str]) -> None:
        super().__init__(
            f"run {run_id[:8]} has no stage {ref!r}; its stages are: {', '.join(known)}"
        )
        self.run_id = run_id
        self.ref = ref
