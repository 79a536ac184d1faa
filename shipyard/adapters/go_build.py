"""Building the cluster's Go binaries: the multi-call Kubernetes binary from ``cluster/``
and KWOK, streaming the build's progress. Go's module and build caches stay where Go keeps
them (outside the clone), so a rebuild only relinks."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from shipyard.adapters.process import run_process

__all__ = ["GO_BUILD_TIMEOUT_SECONDS", "BuildError", "build_kubernetes", "cluster_source_hash",
           "install_kwok"]

KWOK_MODULE = "sigs.k8s.io/kwok/cmd/kwok"
KWOK_VERSION = "v0.8.0"
GO_BUILD_TIMEOUT_SECONDS = 3600.0
"""How long building the Kubernetes binary, or installing KWOK, may take: a first build
downloads modules and compiles everything (tens of minutes on a small machine)."""
_PROGRESS = re.compile(r"^\[\s*(\d+)/(\d+)\] (.*)$")


class BuildError(RuntimeError):
    """A Go build failed; the message ends with the compiler's last lines."""


def cluster_source_hash(cluster_dir: Path) -> str:
    """A hash of what the binary is built from: go.mod, go.sum, the version, the code."""
    digest = hashlib.sha256()
    for path in sorted([cluster_dir / "go.mod", cluster_dir / "go.sum",
                        cluster_dir / "KUBERNETES_VERSION", cluster_dir / "build.sh",
                        *cluster_dir.glob("cmd/**/*.go")]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_kubernetes(cluster_dir: Path, out_dir: Path,
                     on_progress: Callable[[int, int, str], None]) -> Path:
    """Run ``cluster/build.sh OUT_DIR``; ``on_progress(done, total, package)`` follows it.
    Returns the binary's path."""

    def follow(line: str) -> None:
        if match := _PROGRESS.match(line):
            on_progress(int(match[1]), int(match[2]), match[3])

    done = run_process(["bash", str(cluster_dir / "build.sh"), str(out_dir)], cwd=cluster_dir,
                       env={**os.environ, "GOTOOLCHAIN": "local"}, on_line=follow,
                       timeout_seconds=GO_BUILD_TIMEOUT_SECONDS)
    failed = [line for line in done.tail if not _PROGRESS.match(line)]
    if done.timed_out:
        raise BuildError(f"building the Kubernetes binary ran past "
                         f"{GO_BUILD_TIMEOUT_SECONDS:g} s and was killed; `shipyard up` "
                         "resumes it (Go's caches keep what was compiled)")
    if done.exit_code != 0:
        raise BuildError("building the Kubernetes binary failed: " + " | ".join(failed[-6:]))
    return out_dir / "k8s"


def install_kwok(out_dir: Path, on_line: Callable[[str], None]) -> Path:
    """``go install`` KWOK at its pinned version into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    what = f"go install {KWOK_MODULE}@{KWOK_VERSION}"
    done = run_process(
        ["go", "install", f"{KWOK_MODULE}@{KWOK_VERSION}"], on_line=on_line,
        env={**os.environ, "GOBIN": str(out_dir), "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"},
        timeout_seconds=GO_BUILD_TIMEOUT_SECONDS)
    if done.timed_out:
        raise BuildError(f"{what} ran past {GO_BUILD_TIMEOUT_SECONDS:g} s and was killed; "
                         "check the Go module proxy, then run `shipyard up` again")
    if done.exit_code != 0:
        raise BuildError(f"{what} failed: {done.last_lines(6)}")
    return out_dir / "kwok"
