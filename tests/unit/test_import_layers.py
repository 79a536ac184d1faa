"""The import arrows of the design hold: import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_import_contracts_are_kept():
    done = subprocess.run([str(LINT_IMPORTS)], cwd=PROJECT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 4 kept, 0 broken." in done.stdout


def test_a_broken_arrow_is_caught(tmp_path: Path):
    # The domain importing the store must break the layers contract.
    offender = PROJECT / "shipyard" / "domain" / "_layer_probe.py"
    offender.write_text("import shipyard.store  # deliberately wrong\n")
    try:
        done = subprocess.run([str(LINT_IMPORTS)], cwd=PROJECT, capture_output=True,
                              text=True, timeout=300, check=False)
    finally:
        offender.unlink()
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "shipyard.domain._layer_probe" in done.stdout
