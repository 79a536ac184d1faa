"""An app's tests in a container: the test image, and the confinement pytest runs under.

The test image is the base image with one venv holding the app's wheels from the
wheelhouse and the test tools (:data:`TEST_TOOLS`), installed offline by a build with no
network. The repository's own packages (``apps/servicekit``) are not in it: the apps'
conftest files put the checkout's copies first on ``sys.path`` (a checkout tests its own
kit), so the image installs only what those packages declare they depend on. That keeps the
image free of anything the repository built, and lets every commit with the same
dependencies share it: its tag is a digest of the base image, the recipe and the wheels,
so a second run finds it and builds nothing.

The tests then run in a sandbox (:mod:`shipyard.adapters.sandbox`) with the checkout's
``apps/`` mounted read-only at ``/workspace/apps`` and an output folder at ``/out`` for the
JUnit XML report.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from packaging.requirements import Requirement

from shipyard.adapters.docker_engine import BASE_IMAGE, DockerEngine
from shipyard.adapters.sandbox import SANDBOX_USER, Confinement, Limits
from shipyard.adapters.wheelhouse import (
    Wheelhouse,
    WheelhouseError,
    expand_local,
    parse_requirements,
)

__all__ = ["REPORT_NAME", "TEST_IMAGE_REPOSITORY", "TEST_TOOLS", "WORKSPACE",
           "ensure_runner_image", "pytest_confinement", "runner_recipe", "runner_requirements"]

TEST_IMAGE_REPOSITORY = "shipyard/test-runner"
# pytest is all the apps' suites need beyond their own requirements: their conftest files
# and servicekit.testing use httpx, uvicorn and SQLAlchemy, which the apps require anyway.
TEST_TOOLS: tuple[Requirement, ...] = (Requirement("pytest"),)
WORKSPACE = "/workspace"
OUTPUT = "/out"
REPORT_NAME = "junit.xml"


def runner_requirements(app_dir: Path, packages: Mapping[str, Path]) -> list[Requirement]:
    """What the test image of ``app_dir`` installs: its requirements, with the repository's
    packages replaced by their dependencies, and the test tools."""
    requirements_file = app_dir / "requirements.txt"
    if not requirements_file.is_file():
        raise WheelhouseError(f"apps/{app_dir.name}/requirements.txt is missing: list the "
                              "app's dependencies there")
    requirements = parse_requirements(requirements_file.read_text(),
                                      source=f"apps/{app_dir.name}/requirements.txt")
    return [*expand_local(requirements, packages), *TEST_TOOLS]


def runner_recipe(base_image_id: str) -> str:
    """The test image's Dockerfile (``base_image_id`` pins the base in the tag's digest)."""
    return f"""\
# base {base_image_id}
FROM {BASE_IMAGE} AS install
RUN python3 -m venv /opt/venv
COPY wheels/ /tmp/wheels/
RUN /opt/venv/bin/python -m pip install --no-cache-dir --no-index --find-links /tmp/wheels \\
        -r /tmp/wheels/requirements.txt
FROM {BASE_IMAGE}
COPY --from=install /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin
USER {SANDBOX_USER}
"""


def ensure_runner_image(engine: DockerEngine, wheels: Wheelhouse, work: Path,
                        on_line: Callable[[str], None]) -> tuple[str, bool]:
    """The test image holding ``wheels``, built (with no network, in ``work``, removed
    after) only if the engine does not have it yet; returns (its reference, whether it was
    built now)."""
    recipe = runner_recipe(engine.image_id(BASE_IMAGE))
    digest = hashlib.sha256(f"{recipe}\n{wheels.digest()}".encode()).hexdigest()
    reference = f"{TEST_IMAGE_REPOSITORY}:{digest[:24]}"
    if engine.has_image(reference):
        return reference, False
    if work.exists():
        shutil.rmtree(work)
    (work / "wheels").mkdir(parents=True)
    try:
        (work / "Dockerfile").write_text(recipe)
        for wheel in wheels.wheels():
            shutil.copyfile(wheel, work / "wheels" / wheel.name)
        (work / "wheels" / "requirements.txt").write_text("\n".join(wheels.requirements) + "\n")
        for line in engine.build(work, reference,
                                 labels={"dev.shipyard.purpose": "test-runner"}):
            on_line(line)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return reference, True


def pytest_confinement(image: str, app: str, *, apps: Path, out: Path, limits: Limits,
                       labels: Mapping[str, str]) -> Confinement:
    """pytest over ``apps/<app>`` as a checkout runs it (``--import-mode=importlib``, the
    app folder as rootdir, no cache), ``apps`` mounted read-only, the report into ``out``.
    """
    app_dir = f"{WORKSPACE}/apps/{app}"
    command = ("python", "-m", "pytest", app_dir, "-q", "-p", "no:cacheprovider",
               "--rootdir", app_dir, f"--junitxml={OUTPUT}/{REPORT_NAME}", "-o", "addopts=",
               "--import-mode=importlib")
    return Confinement(image=image, command=command, limits=limits, workdir=app_dir,
                       read_only={f"{WORKSPACE}/apps": apps}, writable={OUTPUT: out},
                       labels={"dev.shipyard.purpose": "test", **labels})
