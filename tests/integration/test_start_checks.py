"""A secret file or state directory others can reach stops `shipyard ui` before it serves
anything, and `shipyard status` warns of it, each naming the path, the mode and the fix.
(`shipyard up` tightens them instead: tests/integration/test_postgres_stack.py.)"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.stack import PROJECT, SHIPYARD


@pytest.fixture
def exposed_home(tmp_path: Path) -> Path:
    """A home others may enter, holding a UI key anyone may read."""
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    key = home / "ui-secret-key"
    key.write_text("k" * 64 + "\n")
    key.chmod(0o644)
    return home


def _shipyard(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PREFECT_"))}
    env.update(SHIPYARD_HOME=str(home), COLUMNS="200")
    return subprocess.run([*SHIPYARD, *args], env=env, cwd=PROJECT, capture_output=True,
                          text=True, timeout=120, check=False)


def test_ui_refuses_to_start_naming_each_open_path_its_mode_and_the_fix(
        exposed_home: Path) -> None:
    refused = _shipyard(exposed_home, "ui", "--port", "9")
    assert refused.returncode == 1
    said = " ".join(refused.stderr.split())
    key = exposed_home / "ui-secret-key"
    assert (f"{key} is a secret file with mode 0644: its group may read it and others may "
            f"read it; it must be 0600 or tighter: run `chmod 600 {key}`") in said
    assert f"{exposed_home} is a state directory with mode 0755" in said
    assert f"run `chmod 700 {exposed_home}`" in said
    assert "error: refusing to serve the UI" in said
    assert "Shipyard UI on" not in refused.stdout
    assert (key.stat().st_mode & 0o777) == 0o644, "the check changes nothing"


def test_status_warns_of_open_paths_with_the_fix(exposed_home: Path) -> None:
    shown = _shipyard(exposed_home, "status", "--json", "--only", "postgres")
    key = exposed_home / "ui-secret-key"
    assert f"run `chmod 600 {key}`" in " ".join(shown.stderr.split())
    permissions = json.loads(shown.stdout)["permissions"]
    assert [m.split(" is a ")[0] for m in permissions] == [str(exposed_home), str(key)]
