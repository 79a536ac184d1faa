"""The base image every app builds on: Debian bookworm minbase with Python 3.11, made with
``debootstrap`` from the machine's own Debian mirror and imported as
``shipyard/python-base:bookworm``.

It is built once: the packed root filesystem is kept under the stack directory, so a new
engine (or a purged one) gets the image back in seconds by importing it. It is rebuilt
only when asked (``shipyard up --rebuild-base-image``).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shipyard.adapters.debian import (
    DebianError,
    apt_install,
    debian_mirror,
    debootstrap,
    pack_rootfs,
)
from shipyard.adapters.docker_engine import (
    BASE_IMAGE,
    DockerEngine,
    EngineError,
    default_engine_url,
)
from shipyard.settings import Settings
from shipyard.stack.component import ComponentFailed, ComponentStatus, Progress, UpResult

__all__ = ["BASE_IMAGE", "BaseImageComponent"]

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
IMAGE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "ENV PYTHONDONTWRITEBYTECODE=1",
    'CMD ["python3"]',
]
_PYTHON_CHECK = "import sys, ssl, venv; print(sys.version.split()[0])"


@dataclass
class BaseImageComponent:
    settings: Settings
    rebuild: bool = False
    name: str = "base-image"

    @property
    def tarball(self) -> Path:
        return self.settings.stack_dir / "images" / "python-base-bookworm.tar"

    @property
    def engine(self) -> DockerEngine:
        return DockerEngine(default_engine_url())

    def status(self) -> ComponentStatus:
        engine = self.engine
        try:
            present = engine.answers() and engine.has_image(BASE_IMAGE)
        except EngineError as err:
            return ComponentStatus(self.name, False, BASE_IMAGE, "", str(err))
        if not present:
            cached = "rootfs cached" if self.tarball.exists() else "not built yet"
            return ComponentStatus(self.name, False, BASE_IMAGE, "", f"not in the engine "
                                   f"({cached})")
        size = engine.image_size(BASE_IMAGE) / 1e6
        return ComponentStatus(self.name, True, BASE_IMAGE, engine.url, f"{size:.0f} MB")

    def up(self, progress: Progress) -> UpResult:
        engine = self.engine
        try:
            if not self.rebuild and engine.has_image(BASE_IMAGE):
                return UpResult(self.name, False, f"{BASE_IMAGE} already in the engine")
            built = False
            if self.rebuild or not self.tarball.exists():
                self._build_rootfs(progress)
                built = True
            progress(f"importing {BASE_IMAGE}")
            engine.import_rootfs(self.tarball, BASE_IMAGE, IMAGE_CHANGES)
            progress("checking that Python runs in it")
            version = engine.run(BASE_IMAGE, ["python3", "-c", _PYTHON_CHECK])
        except (EngineError, DebianError) as err:
            raise ComponentFailed(self.name, str(err), fix="`shipyard up "
                                  "--rebuild-base-image` starts over") from err
        how = "built with debootstrap" if built else f"imported from {self.tarball}"
        return UpResult(self.name, True, f"{BASE_IMAGE} {how} (Python {version.strip()})")

    def _build_rootfs(self, progress: Progress) -> None:
        apt_install(["debootstrap"], progress)
        mirror = debian_mirror()
        self.tarball.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.tarball.parent) as scratch:
            rootfs = Path(scratch) / "rootfs"
            progress(f"debootstrap {SUITE} minbase with {', '.join(PACKAGES)} "
                     "(about a minute)")
            debootstrap(rootfs, suite=SUITE, packages=PACKAGES, mirror=mirror)
            progress("packing the root filesystem")
            pack_rootfs(rootfs, self.tarball)

    def down(self, *, purge: bool = False) -> bool:
        if purge and self.tarball.exists():
            self.tarball.unlink()
            shutil.rmtree(self.tarball.parent, ignore_errors=True)
            return True
        return False
