"""Fixtures every test tree may use (see tests/support), and the service kit importable
from the checkout: tests of Shipyard's own code drive real apps through
``servicekit.testing`` and read its metrics, as the apps' own tests do (their conftests
put it on the path the same way), whatever is installed."""

import sys
from pathlib import Path

_KIT = str(Path(__file__).resolve().parent / "apps" / "servicekit")
if _KIT not in sys.path:
    sys.path.insert(0, _KIT)

pytest_plugins = ["tests.support.stack"]
