"""ruff and mypy are clean on the whole tree: the suite fails when they are not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


CONFIG = str(PROJECT / "pyproject.toml")
APPS = sorted(p.parent for p in (PROJECT / "apps").glob("*/app.yaml"))
# The kit every app builds on: checked like an app (it has no app.yaml, it is no service),
# and put on mypy's path so apps type-check against this tree's copy, installed or not.
SERVICEKIT = PROJECT / "apps" / "servicekit"


@pytest.mark.parametrize(
    ("argv", "cwd"),
    [
        ([str(BIN / "ruff"), "check", "."], PROJECT),
        ([str(BIN / "mypy"), "shipyard", "stages", "pipelines", "ui", "tests"], PROJECT),
        # Each app is a project of its own (its package at its root), checked from there.
        *[([str(BIN / "mypy"), "--config-file", CONFIG, app.name, "tests"], app)
          for app in [SERVICEKIT, *APPS]],
    ],
    ids=["ruff", "mypy", *[f"mypy-{app.name}" for app in [SERVICEKIT, *APPS]]],
)
def test_the_tree_is_clean(argv: list[str], cwd: Path):
    env = {**os.environ, "MYPYPATH": str(SERVICEKIT)}
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900,
                          check=False, env=env)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
