"""Fixtures every test tree may use (see tests/support), and the service kit importable
from the checkout: tests of Shipyard's own code drive real apps through
``servicekit.testing`` and read its metrics, as the apps' own tests do (their conftests
put it on the path the same way), whatever is installed."""

import sys
from pathlib import Path

import pytest

_KIT = str(Path(__file__).resolve().parent / "apps" / "servicekit")
if _KIT not in sys.path:
    sys.path.insert(0, _KIT)

pytest_plugins = ["tests.support.stack", "tests.support.services"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The session's order. The integration and security tests first; then the fault
    suite, which starts from what they left in production (every app released) instead
    of releasing its own, on the same stack. A test marked ``starts_in_background`` (the
    crash-recovery delivery, minutes of waiting for rollouts and windows) starts its work
    next; the unit and app tests, which need no stack, run beside it; its assertions come
    last."""
    items.sort(key=_place)


def _place(item: pytest.Item) -> int:
    path = str(item.path)
    if item.get_closest_marker("starts_in_background"):
        return 3
    if "/tests/faults/test_crash_recovery.py" in path:
        return 5
    if "/tests/faults/" in path:
        return 2
    if "/tests/unit/" in path or "/apps/" in path:
        return 4
    return 1
