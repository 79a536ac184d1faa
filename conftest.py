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
    """The fault suite runs last: it starts from what the integration tests left in
    production (every app released) instead of releasing its own, and shares their
    session's stack."""
    items.sort(key=lambda item: "/tests/faults/" in str(item.path))
