"""Hermetic image builds of an app: the wheels are gathered on the host, the image installs
them offline.

Containers here cannot reach the package index, so a build context is made of the app's
folder (without its tests and caches) and a ``wheels/`` folder holding every wheel its
``requirements.txt`` needs. Nothing of the repository runs on the host while the context
is made (:mod:`shipyard.adapters.wheelhouse`): the index's wheels are downloaded, binary
only, and a requirement naming a folder of ``apps/`` that is a Python project
(``apps/servicekit``) is built into a wheel in a sandbox and taken in under its own name,
so a same-named package on the index can never take its place.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from shipyard.adapters.docker_engine import DockerEngine, default_engine_url
from shipyard.adapters.wheelhouse import (
    PIP_TIMEOUT_SECONDS,
    WheelhouseError,
    WheelhouseTimedOut,
    build_local_wheel,
    build_requirements,
    expand_local,
    gather_wheels,
    parse_requirements,
)

__all__ = ["AppImageError", "AppImageTimedOut", "BuiltImage", "build_app_image",
           "installed_versions", "local_packages", "prepare_build_context"]

IGNORED = shutil.ignore_patterns("tests", "conftest.py", "__pycache__", "*.pyc", ".*_cache",
                                 "wheels", "*.egg-info", "build", "dist", "deploy")


class AppImageError(RuntimeError):
    """The context could not be made (a missing or refused requirements file, no wheel for
    a requirement, a failed build of a local package)."""


class AppImageTimedOut(AppImageError):
    """Gathering the wheels ran past its deadline (``pip download`` was killed)."""


@dataclass(frozen=True, slots=True)
class BuiltImage:
    reference: str
    image_id: str
    size_bytes: int


def local_packages(apps_dir: Path) -> dict[str, Path]:
    """The Python projects among ``apps/`` (folders with a ``pyproject.toml``), by name."""
    return {p.parent.name: p.parent for p in sorted(apps_dir.glob("*/pyproject.toml"))}


def prepare_build_context(app_dir: Path, out: Path, *, packages: Mapping[str, Path],
                          pip_cache: Path, on_line: Callable[[str], None],
                          wheelhouse: Path | None = None,
                          engine: DockerEngine | None = None,
                          pip_timeout_seconds: float = PIP_TIMEOUT_SECONDS) -> Path:
    """Copy ``app_dir`` into ``out`` (emptied first) and gather its wheels into
    ``out/wheels``; returns ``out``. Index wheels are kept in ``wheelhouse`` (default:
    beside ``pip_cache``); local packages are built on ``engine`` (default: the local
    one). Each ``pip download`` gets ``pip_timeout_seconds``."""
    requirements_file = app_dir / "requirements.txt"
    if not requirements_file.exists():
        raise AppImageError(f"{requirements_file} is missing: list the app's dependencies "
                            "there")
    store = wheelhouse or pip_cache.parent / "wheelhouse"
    engine = engine or DockerEngine(default_engine_url())
    if out.exists():
        shutil.rmtree(out)
    # Links stay links: one pointing out of the checkout must not copy a host file in.
    shutil.copytree(app_dir, out, ignore=IGNORED, symlinks=True)
    wheels = out / "wheels"
    wheels.mkdir()
    # The versions the tests ran with (this environment's), not whatever the index has
    # newest today: an image holds what was tested.
    constraints = installed_versions()
    try:
        requirements = parse_requirements(requirements_file.read_text(),
                                          source=str(requirements_file))
        local = {canonicalize_name(name): path for name, path in packages.items()}
        for requirement in requirements:
            package = local.get(canonicalize_name(requirement.name))
            if package is None:
                continue
            on_line(f"building {package.name}'s wheel in a sandbox (no network)")
            tools = gather_wheels(build_requirements(package), store=store,
                                  constraints=constraints, pip_cache=pip_cache,
                                  on_line=on_line, timeout_seconds=pip_timeout_seconds)
            built = build_local_wheel(engine, package, out / ".local" / package.name,
                                      build_tools=tools, store=store, on_line=on_line)
            shutil.copyfile(built, wheels / built.name)
        gathered = gather_wheels(expand_local(requirements, packages), store=store,
                                 constraints=constraints, pip_cache=pip_cache,
                                 on_line=on_line, timeout_seconds=pip_timeout_seconds)
    except WheelhouseTimedOut as err:
        raise AppImageTimedOut(str(err)) from err
    except WheelhouseError as err:
        raise AppImageError(str(err)) from err
    finally:
        shutil.rmtree(out / ".local", ignore_errors=True)
    for wheel in gathered.wheels():
        shutil.copyfile(wheel, wheels / wheel.name)
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
