"""Fixtures every test tree may use (see tests/support)."""

pytest_plugins = ["tests.support.stack"]
