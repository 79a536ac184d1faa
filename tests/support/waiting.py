"""Waiting in tests for something that happens in another process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

__all__ = ["eventually"]

T = TypeVar("T")


def eventually(check: Callable[[], T | None], *, seconds: float, what: str,
               interval: float = 0.1) -> T:
    """``check()``'s first truthy answer; the test fails naming ``what`` when none came
    within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting after {seconds:.0f}s for {what}")
        time.sleep(interval)
