"""Building the cluster's binary through run_process, with a stand-in build.sh (no Go):
its progress is followed, its failure quoted and its deadline kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.adapters import go_build
from shipyard.adapters.go_build import BuildError, build_kubernetes


def cluster(tmp_path: Path, script: str) -> Path:
    (tmp_path / "build.sh").write_text(script)
    return tmp_path


def test_progress_lines_are_followed_and_the_binary_named(tmp_path: Path):
    seen: list[tuple[int, int, str]] = []
    built = build_kubernetes(cluster(tmp_path, "echo '[ 1/2] k8s.io/a'\necho '[ 2/2] k8s.io/b'\n"),
                             tmp_path / "bin", lambda *step: seen.append(step))
    assert seen == [(1, 2, "k8s.io/a"), (2, 2, "k8s.io/b")]
    assert built == tmp_path / "bin" / "k8s"


def test_a_failed_build_quotes_the_compiler_not_the_progress(tmp_path: Path):
    with pytest.raises(BuildError, match=r"failed: main.go:3: undefined: x$"):
        build_kubernetes(cluster(tmp_path, "echo '[ 1/2] k8s.io/a'\n"
                                           "echo 'main.go:3: undefined: x'\nexit 1\n"),
                         tmp_path / "bin", lambda *_: None)


def test_a_build_past_its_deadline_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(go_build, "GO_BUILD_TIMEOUT_SECONDS", 0.3)
    with pytest.raises(BuildError, match=r"ran past 0.3 s and was killed"):
        build_kubernetes(cluster(tmp_path, "sleep 60\n"), tmp_path / "bin", lambda *_: None)
