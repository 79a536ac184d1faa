"""Hermetic image builds of an app: the wheels are gathered on the host, the image installs
them offline.

Containers here cannot reach the package index, so a build context is made of the app's
folder (without its tests and caches) and a ``wheels/`` folder holding every wheel its
``requirements.txt`` needs. A requirement naming a folder of ``apps/`` that is a Python
project (``apps/servicekit``) is built from that folder and pinned by its wheel's path, so
a same-named package on the index can never take its place. pip's cache lives outside the
clone, so a second build downloads nothing.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shipyard.adapters.docker_engine import DockerEngine

__all__ = ["AppImageError", "BuiltImage", "build_app_image", "installed_versions",
           "local_packages", "prepare_build_context"]

IGNORED = shutil.ignore_patterns("tests", "conftest.py", "__pycache__", "*.pyc", ".*_cache",
                                 "wheels", "*.egg-info", "build", "dist", "deploy")
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class AppImageError(RuntimeError):
    """The context could not be made (a missing requirements file, a failed pip)."""


@dataclass(frozen=True, slots=True)
class BuiltImage:
    reference: str
    image_id: str
    size_bytes: int


def local_packages(apps_dir: Path) -> dict[str, Path]:
    """The Python projects among ``apps/`` (folders with a ``pyproject.toml``), by name."""
    return {p.parent.name: p.parent for p in sorted(apps_dir.glob("*/pyproject.toml"))}


def prepare_build_context(app_dir: Path, out: Path, *, packages: Mapping[str, Path],
                          pip_cache: Path, on_line: Callable[[str], None]) -> Path:
    """Copy ``app_dir`` into ``out`` (emptied first) and gather its wheels into
    ``out/wheels``; returns ``out``."""
    requirements = app_dir / "requirements.txt"
    if not requirements.exists():
        raise AppImageError(f"{requirements} is missing: list the app's dependencies there")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(app_dir, out, ignore=IGNORED)
    wheels = out / "wheels"
    wheels.mkdir()
    pinned = []
    for line in requirements.read_text().splitlines():
        match = _REQUIREMENT_NAME.match(line.split("#", 1)[0])
        if match and match[1] in packages:
            _pip(["wheel", "--no-deps", "--wheel-dir", str(wheels),
                  str(packages[match[1]])], pip_cache, on_line)
            built = sorted(wheels.glob(f"{match[1].replace('-', '_')}-*.whl"))
            if not built:
                raise AppImageError(f"building {match[1]} gave no wheel")
            pinned.append(str(built[-1]))
        elif line.strip():
            pinned.append(line)
    host_requirements = out / ".host-requirements.txt"
    host_requirements.write_text("\n".join(pinned) + "\n")
    # The versions the tests ran with (this environment's), not whatever the index has
    # newest today: an image holds what was tested.
    constraints = out / ".constraints.txt"
    constraints.write_text(installed_versions())
    _pip(["wheel", "--wheel-dir", str(wheels), "-r", str(host_requirements),
          "-c", str(constraints)], pip_cache, on_line)
    host_requirements.unlink()
    constraints.unlink()
    return out


def installed_versions() -> str:
    """``name==version`` of every distribution installed in this environment, except
    those installed from a folder (this project, the apps' local packages)."""
    lines = set()
    for dist in importlib.metadata.distributions():
        direct = dist.read_text("direct_url.json") or ""
        name = dist.metadata["Name"]
        if name and '"dir_info"' not in direct:
            lines.add(f"{name}=={dist.version}")
    return "\n".join(sorted(lines)) + "\n"


def build_app_image(engine: DockerEngine, context: Path, reference: str, *,
                    labels: Mapping[str, str], version: str,
                    on_line: Callable[[str], None], nocache: bool = False) -> BuiltImage:
    """Build ``context`` (from :func:`prepare_build_context`) as ``reference`` without
    network, with ``version`` as the ``VERSION`` build argument."""
    for line in engine.build(context, reference, labels=labels,
                             buildargs={"VERSION": version}, nocache=nocache):
        on_line(line)
    return BuiltImage(reference, engine.image_id(reference), engine.image_size(reference))


def _pip(args: list[str], cache: Path, on_line: Callable[[str], None]) -> None:
    command = [sys.executable, "-m", "pip", *args, "--cache-dir", str(cache),
               "--disable-pip-version-check", "--progress-bar", "off"]
    # A fixed timestamp inside the wheels built here (servicekit's): the same source gives
    # the same bytes, so the engine's layer cache still matches on a rebuild.
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    assert process.stdout is not None
    tail: list[str] = []
    for raw in process.stdout:
        line = raw.rstrip("\n")
        on_line(line)
        tail = [*tail[-3:], line]
    if process.wait() != 0:
        raise AppImageError(f"`pip {args[0]}` failed: " + " | ".join(tail))
