"""The test helpers themselves: polling, and `python -m` processes that start, fail and
keep to their own environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from servicekit.testing import eventually, module_process, run_module

HERE = Path(__file__).resolve().parent


def test_eventually_returns_the_first_truthy_answer() -> None:
    answers = iter([0, None, 3])
    assert eventually(lambda: next(answers), "three") == 3


def test_eventually_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="waiting for the moon"):
        eventually(lambda: False, "the moon", seconds=0.05)


def test_a_process_that_exits_before_it_is_ready_fails_with_its_stderr() -> None:
    # slow_service needs RELEASE_FILE: without it, it stops with a KeyError naming it.
    with pytest.raises(RuntimeError, match=r"(?s)did not answer /readyz.*RELEASE_FILE"), \
            module_process("slow_service", HERE):
        pass


def test_the_child_keeps_none_of_this_processs_settings(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RELEASE_FILE", str(tmp_path / "release"))
    # PORT=0 is refused: were RELEASE_FILE inherited, the child would exit 2, not serve.
    finished = run_module("slow_service", HERE, {"PORT": "0"})
    assert finished.returncode != 0
    assert "KeyError: 'RELEASE_FILE'" in finished.stderr
