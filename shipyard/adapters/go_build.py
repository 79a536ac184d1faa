"""Building the cluster's Go binaries: the multi-call Kubernetes binary from ``cluster/``
and KWOK, streaming the build's progress. Go's module and build caches stay where Go keeps
them (outside the clone), so a rebuild only relinks."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

__all__ = ["BuildError", "build_kubernetes", "cluster_source_hash", "install_kwok"]

KWOK_MODULE = "sigs.k8s.io/kwok/cmd/kwok"
KWOK_VERSION = "v0.8.0"
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
    process = subprocess.Popen(
        ["bash", str(cluster_dir / "build.sh"), str(out_dir)], cwd=cluster_dir,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "GOTOOLCHAIN": "local"})
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        line = line.rstrip("\n")
        match = _PROGRESS.match(line)
        if match:
            on_progress(int(match[1]), int(match[2]), match[3])
        else:
            tail = [*tail[-19:], line]
    if process.wait() != 0:
        raise BuildError("building the Kubernetes binary failed: " + " | ".join(tail[-6:]))
    return out_dir / "k8s"


def install_kwok(out_dir: Path, on_line: Callable[[str], None]) -> Path:
    """``go install`` KWOK at its pinned version into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["go", "install", f"{KWOK_MODULE}@{KWOK_VERSION}"],
        env={**os.environ, "GOBIN": str(out_dir), "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"},
        capture_output=True, text=True, check=False, timeout=3600)
    for line in done.stderr.splitlines():
        on_line(line)
    if done.returncode != 0:
        raise BuildError(f"go install {KWOK_MODULE}@{KWOK_VERSION} failed: "
                         + " | ".join(done.stderr.strip().splitlines()[-6:]))
    return out_dir / "kwok"
