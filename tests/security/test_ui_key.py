"""The UI key must be at least 32 bytes, from the environment or its file, or the UI does
not start; an empty or cut-short key file is an error, never an empty key."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr

from shipyard.settings import Settings
from tests.security.conftest import ui_env
from tests.support.stack import PROJECT, SHIPYARD, free_port
from ui.auth import MIN_KEY_BYTES, UiKeyError, secret_key


def settings(home: Path, key: str | None = None) -> Settings:
    return Settings(home=home, ui_secret_key=SecretStr(key) if key is not None else None)


@pytest.mark.integration
def test_shipyard_ui_refuses_to_start_with_a_short_key(tmp_path: Path) -> None:
    env = ui_env(tmp_path, f"sqlite:///{tmp_path / 'shipyard.db'}",
                 SHIPYARD_UI_SECRET_KEY="too short")
    done = subprocess.run([*SHIPYARD, "ui", "--port", str(free_port())], env=env,
                          cwd=PROJECT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 1
    assert ("error: SHIPYARD_UI_SECRET_KEY holds 9 bytes; the UI key needs at least 32: "
            "set it to the output of") in done.stderr


def test_a_short_key_in_the_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UiKeyError, match="SHIPYARD_UI_SECRET_KEY holds 31 bytes"):
        secret_key(settings(tmp_path, "k" * 31))
    assert secret_key(settings(tmp_path, "k" * 32)) == "k" * 32
    assert not (tmp_path / "ui-secret-key").exists()


@pytest.mark.parametrize("content", ["", "\n", "abc\n", "k" * (MIN_KEY_BYTES - 1)])
def test_an_empty_or_cut_short_key_file_is_an_error_naming_the_file(
        tmp_path: Path, content: str) -> None:
    key_file = tmp_path / "ui-secret-key"
    key_file.touch(mode=0o600)
    key_file.write_text(content)
    with pytest.raises(UiKeyError) as refused:
        secret_key(settings(tmp_path))
    message = str(refused.value)
    assert str(key_file) in message
    assert ("delete it and" in message and "start the UI again" in message) or (
        "Shipyard makes a new one" in message)
    assert key_file.read_text() == content  # nothing is replaced behind the operator's back


def test_a_key_file_others_may_read_is_refused_naming_the_fix(tmp_path: Path) -> None:
    key_file = tmp_path / "ui-secret-key"
    key_file.write_text("k" * 64)
    key_file.chmod(0o644)
    with pytest.raises(UiKeyError, match=r"is mode 0644.*`chmod 600 .*ui-secret-key`"):
        secret_key(settings(tmp_path))


def test_a_missing_key_file_is_made_once_private_and_long_enough(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with ThreadPoolExecutor(8) as pool:  # UIs starting at once agree on one key
        keys = set(pool.map(lambda _: secret_key(settings(home)), range(8)))
    assert len(keys) == 1
    key = keys.pop()
    assert len(key.encode()) >= 64
    key_file = home / "ui-secret-key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(home)) == ["ui-secret-key"]  # no temporary left behind
    assert secret_key(settings(home)) == key  # kept across restarts
