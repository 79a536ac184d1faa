"""ruff and mypy are clean on the whole tree: the suite fails when they are not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


CONFIG = str(PROJECT / "pyproject.toml")
APPS = sorted(p.parent for p in (PROJECT / "apps").glob("*/app.yaml"))


@pytest.mark.parametrize(
    ("argv", "cwd"),
    [
        ([str(BIN / "ruff"), "check", "."], PROJECT),
        ([str(BIN / "mypy"), "shipyard", "stages", "pipelines", "ui", "tests"], PROJECT),
        # Each app is a project of its own (its package at its root), checked from there.
        *[([str(BIN / "mypy"), "--config-file", CONFIG, app.name, "tests"], app)
          for app in APPS],
    ],
    ids=["ruff", "mypy", *[f"mypy-{app.name}" for app in APPS]],
)
def test_the_tree_is_clean(argv: list[str], cwd: Path):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
