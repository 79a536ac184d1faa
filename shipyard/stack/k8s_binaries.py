"""The cluster's binaries: the multi-call Kubernetes binary built from ``cluster/`` (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl) and
KWOK. Built into the stack directory, outside the clone; rebuilt only when ``cluster/``
changes (a stamp holds the hash of its sources)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shipyard.adapters.go_build import (
    KWOK_VERSION,
    BuildError,
    build_kubernetes,
    cluster_source_hash,
    install_kwok,
)
from shipyard.settings import Settings
from shipyard.stack.component import ComponentFailed, ComponentStatus, Progress, UpResult

__all__ = ["K8sBinariesComponent"]


@dataclass
class K8sBinariesComponent:
    settings: Settings
    name: str = "k8s-binaries"

    @property
    def cluster_dir(self) -> Path:
        return self.settings.source_dir / "cluster"

    @property
    def bin_dir(self) -> Path:
        return self.settings.stack_dir / "cluster" / "bin"

    @property
    def stamp(self) -> Path:
        return self.bin_dir / "k8s.source-hash"

    def _current(self) -> bool:
        try:
            return (self.bin_dir / "k8s").exists() and self.stamp.read_text() == (
                cluster_source_hash(self.cluster_dir))
        except OSError:
            return False

    def status(self) -> ComponentStatus:
        k8s, kwok = self.bin_dir / "k8s", self.bin_dir / "kwok"
        if not k8s.exists():
            return ComponentStatus(self.name, False, "", str(self.bin_dir), "not built yet")
        version = _version([str(self.bin_dir / "kube-apiserver"), "--version"])
        detail = f"{k8s.stat().st_size / 1e6:.0f} MB" + (
            "" if self._current() else "; cluster/ changed since: `shipyard up` rebuilds")
        detail += f"; kwok {KWOK_VERSION}" if kwok.exists() else "; kwok missing"
        return ComponentStatus(self.name, self._current() and kwok.exists(), version,
                               str(self.bin_dir), detail)

    def up(self, progress: Progress) -> UpResult:
        if shutil.which("go") is None:
            raise ComponentFailed(self.name, "the Go toolchain is not installed",
                                  fix="install Go 1.26 (the cluster is built from source)")
        done: list[str] = []
        try:
            if not self._current():
                def report(count: int, total: int, package: str) -> None:
                    progress(f"building Kubernetes ({package})", count, total)

                build_kubernetes(self.cluster_dir, self.bin_dir, report)
                self.stamp.write_text(cluster_source_hash(self.cluster_dir))
                done.append(_version([str(self.bin_dir / "kube-apiserver"), "--version"]))
            if not (self.bin_dir / "kwok").exists():
                progress(f"go install kwok {KWOK_VERSION}")
                install_kwok(self.bin_dir, lambda line: progress(f"kwok: {line}"))
                done.append(f"kwok {KWOK_VERSION}")
        except BuildError as err:
            raise ComponentFailed(self.name, str(err), fix="check `go version` (1.26) and "
                                  "the Go module proxy; `shipyard up` resumes") from err
        if not done:
            return UpResult(self.name, False, f"binaries in {self.bin_dir} are up to date")
        return UpResult(self.name, True, f"built {', '.join(done)} into {self.bin_dir}")

    def down(self, *, purge: bool = False) -> bool:
        if purge and self.bin_dir.exists():
            shutil.rmtree(self.bin_dir)
            return True
        return False


def _version(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    return done.stdout.strip() or done.stderr.strip()[:80]
