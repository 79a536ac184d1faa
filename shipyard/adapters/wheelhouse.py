"""The wheelhouse: the wheels an app, its tests or a build needs, gathered on the host
without running any code of the repository or of the packages it names.

A repository's ``requirements.txt`` is untrusted. It is read line by line, and only plain
requirements pass (a name, extras, a version, markers): pip options (``--index-url``,
``-e``, ``-r``, ``--no-binary``), paths and URLs are refused with the line named, so the
file cannot point pip elsewhere or at code to build. The wheels then come from the index
with ``pip download --only-binary :all:`` for the images' interpreter (CPython 3.11,
manylinux x86_64, glibc up to bookworm's 2.36), whatever the host runs: pip never builds
a source distribution here, so no ``setup.py`` runs on the host.

A gathered set is kept under a key of everything that chose it (the requirements, the
constraints, the target, pip's version), so asking again costs nothing.

A package of the repository itself (``apps/servicekit``) is not on the index, and building
its wheel runs its build backend: that happens in a sandbox
(:mod:`shipyard.adapters.sandbox`) from the base image, with the backend's own wheels
(``[build-system] requires``, gathered as above) mounted read-only and no network; pip is
the base image's own (Debian's wheel).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import sys
import tomllib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from shipyard.adapters.docker_engine import BASE_IMAGE, DockerEngine
from shipyard.adapters.process import run_process
from shipyard.adapters.sandbox import Confinement, Limits, Sandbox, stage_source, writable_dir

__all__ = ["BUILD_LIMITS", "PIP_TIMEOUT_SECONDS", "TARGET_PLATFORMS", "Wheelhouse",
           "WheelhouseError", "WheelhouseTimedOut", "build_local_wheel", "build_requirements",
           "download_argv", "expand_local", "gather_wheels", "parse_requirements"]

TARGET_PYTHON = "3.11"
TARGET_IMPLEMENTATION = "cp"
TARGET_ABI = "cp311"  # pip adds abi3 and none itself
# pip expands only the legacy manylinux2014 alias to older tags, so each glibc a wheel may
# ask for is named: up to bookworm's 2.36, since a wheel built for a newer glibc would not
# load in the base image.
TARGET_PLATFORMS: tuple[str, ...] = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)),
    "manylinux2014_x86_64",
)
_ARCHIVE_SUFFIXES = (".whl", ".zip", ".tar", ".tgz", ".gz", ".tbz", ".tbz2", ".bz2", ".txz",
                     ".xz", ".tlz", ".lz", ".lzma")
BUILD_LIMITS = Limits(cpus=1.0, memory_mib=1024, pids=256, seconds=300)
PIP_TIMEOUT_SECONDS = 900.0
"""How long one ``pip download`` may run unless the caller says (the stages pass
``SHIPYARD_PIP_TIMEOUT_SECONDS``)."""
# A fixed timestamp inside the wheels built here: the same source gives the same bytes, so
# the engine's layer cache still matches on a rebuild.
_SOURCE_DATE_EPOCH = "315532800"
_SOURCE_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*_cache", "build", "dist",
                                         "*.egg-info")
# In the sandbox, as a script of ours: setuptools writes into the source tree (build/,
# *.egg-info), so the build works on a copy in the scratch folder; the build tools' wheels
# are unpacked onto PYTHONPATH rather than installed into an isolated environment per
# build (a pip install each, twice as slow); pip itself is Debian's wheel in the base image,
# run from its zip.
_BUILD_SCRIPT = """\
import glob, os, shutil, zipfile
shutil.copytree("/src", "/tmp/src", symlinks=True)
for wheel in sorted(glob.glob("/wheels/*.whl")):
    with zipfile.ZipFile(wheel) as tools:
        tools.extractall("/tmp/tools")
[pip] = glob.glob("/usr/share/python-wheels/pip-*.whl")
os.environ["PYTHONPATH"] = "/tmp/tools:" + pip
os.execv("/usr/bin/python3", ["python3", "-m", "pip", "wheel", "--no-build-isolation",
         "--no-index", "--no-deps", "--no-cache-dir", "--wheel-dir", "/out", "/tmp/src"])
"""


class WheelhouseError(RuntimeError):
    """Wheels could not be gathered or built; the message names the file and line, or the
    package, and what to change."""


class WheelhouseTimedOut(WheelhouseError):
    """``pip download`` ran past its deadline and was killed."""


@dataclass(frozen=True, slots=True)
class Wheelhouse:
    """A folder of wheels and the requirements they satisfy."""

    path: Path
    requirements: tuple[str, ...]

    def wheels(self) -> list[Path]:
        return sorted(self.path.glob("*.whl"))

    def digest(self) -> str:
        """A hex digest of the wheels' names and contents."""
        digest = hashlib.sha256()
        for wheel in self.wheels():
            digest.update(f"{wheel.name}\n".encode())
            with wheel.open("rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
        return digest.hexdigest()


def parse_requirements(text: str, *, source: str) -> list[Requirement]:
    """The requirements of a ``requirements.txt`` text; anything but a plain requirement
    (an option, a path, a URL, a continued line) is refused, naming ``source`` and the
    line."""
    found = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            found.append(_plain_requirement(line, where=f"{source} line {number}"))
    return found


def _plain_requirement(text: str, *, where: str) -> Requirement:
    if text.startswith("-") or text.endswith("\\"):
        raise WheelhouseError(f"{where}: {text!r} is a pip option; only requirements "
                              "('name[extra]>=version') are read, wheels come from the "
                              "configured index")
    try:
        requirement = Requirement(text)
    except InvalidRequirement as err:
        raise WheelhouseError(f"{where}: {text!r} is not a requirement ({err}); write "
                              "'name>=version'") from err
    if requirement.url:
        raise WheelhouseError(f"{where}: {text!r} names a URL; only index packages are "
                              "gathered: write 'name>=version'")
    if requirement.name.lower().endswith(_ARCHIVE_SUFFIXES):
        # A valid project name, but pip would take it for an archive file to build.
        raise WheelhouseError(f"{where}: {text!r} is not a requirement but a file name; "
                              "write 'name>=version'")
    return requirement


def _pyproject(package_dir: Path) -> dict[str, object]:
    path = package_dir / "pyproject.toml"
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise WheelhouseError(f"{path}: {err}") from err


def _declared(package_dir: Path, table: str, key: str,
              default: list[str] | None = None) -> list[Requirement]:
    """Plain requirements listed at ``[table] key`` of the package's pyproject.toml."""
    section = _pyproject(package_dir).get(table, {})
    where = f"{package_dir / 'pyproject.toml'} [{table}] {key}"
    if not isinstance(section, dict):
        raise WheelhouseError(f"{where}: [{table}] is not a table")
    if key == "dependencies" and key in section.get("dynamic", []):
        raise WheelhouseError(f"{where} is dynamic: list the dependencies in pyproject.toml, "
                              "since nothing of the repository runs to compute them")
    values = section.get(key, default if default is not None else [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise WheelhouseError(f"{where} must be a list of requirement strings")
    return [_plain_requirement(v, where=where) for v in values]


def expand_local(requirements: Iterable[Requirement],
                 packages: Mapping[str, Path]) -> list[Requirement]:
    """``requirements`` with each package of the repository (``packages``, by name) replaced
    by the dependencies its pyproject.toml declares, recursively: what a test of the
    checkout needs installed when the packages themselves come from the checkout."""
    local = {canonicalize_name(name): path for name, path in packages.items()}
    expanded: list[Requirement] = []
    seen: set[str] = set()
    pending = list(requirements)
    while pending:
        requirement = pending.pop(0)
        name = canonicalize_name(requirement.name)
        if name not in local:
            expanded.append(requirement)
        elif name not in seen:
            seen.add(name)
            pending.extend(_declared(local[name], "project", "dependencies"))
    return expanded


def build_requirements(package_dir: Path) -> list[Requirement]:
    """What building ``package_dir``'s wheel needs: its ``[build-system] requires`` (PEP
    518's default when absent) and ``wheel``, which setuptools before 70.1 asks for at
    build time."""
    declared = _declared(package_dir, "build-system", "requires",
                         default=["setuptools>=40.8.0"])
    return [*declared, Requirement("wheel")]


def download_argv(requirements_file: Path, constraints_file: Path, dest: Path,
                  pip_cache: Path) -> list[str]:
    """The pip command that downloads binary wheels only, for the images' interpreter."""
    platforms = [arg for platform in TARGET_PLATFORMS for arg in ("--platform", platform)]
    return [sys.executable, "-m", "pip", "download", "--only-binary", ":all:",
            *platforms, "--python-version", TARGET_PYTHON,
            "--implementation", TARGET_IMPLEMENTATION, "--abi", TARGET_ABI,
            "--dest", str(dest), "-r", str(requirements_file), "-c", str(constraints_file),
            "--cache-dir", str(pip_cache), "--disable-pip-version-check",
            "--progress-bar", "off", "--no-input"]


def gather_wheels(requirements: Sequence[Requirement], *, store: Path, constraints: str,
                  pip_cache: Path, on_line: Callable[[str], None],
                  timeout_seconds: float = PIP_TIMEOUT_SECONDS) -> Wheelhouse:
    """The wheels of ``requirements`` (and everything they need) within ``constraints``
    (``name==version`` lines), from ``store`` when this set was gathered before. pip
    gets ``timeout_seconds``; past it, :class:`WheelhouseTimedOut`."""
    lines = tuple(sorted({str(r) for r in requirements}))
    key = hashlib.sha256("\n".join([
        *lines, "--", constraints, "--", TARGET_PYTHON, TARGET_ABI, *TARGET_PLATFORMS,
        importlib.metadata.version("pip")]).encode()).hexdigest()[:32]
    final = store / key
    if (final / "requirements.txt").is_file():
        return Wheelhouse(final, lines)
    staging = store / f".{key}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        (staging / "requirements.txt").write_text("\n".join(lines) + "\n")
        constraints_file = store / f"{staging.name}.constraints"
        constraints_file.write_text(constraints)
        try:
            if lines:  # pip refuses an empty requirements file
                # In the new, empty folder: no name can resolve to a path beside pip.
                _pip(download_argv(staging / "requirements.txt", constraints_file, staging,
                                   pip_cache), on_line, cwd=staging,
                     timeout_seconds=timeout_seconds)
        finally:
            constraints_file.unlink()
        try:
            # Whole or not at all: a set is visible once complete, and a set gathered at
            # the same moment by another run is as good as this one.
            staging.rename(final)
        except OSError:
            if not (final / "requirements.txt").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return Wheelhouse(final, lines)


def build_local_wheel(engine: DockerEngine, package_dir: Path, work: Path, *,
                      build_tools: Wheelhouse, on_line: Callable[[str], None],
                      store: Path | None = None, labels: Mapping[str, str] | None = None,
                      limits: Limits = BUILD_LIMITS) -> Path:
    """The wheel of the repository's package ``package_dir``, built in a sandbox with
    ``build_tools`` (from :func:`build_requirements`) as the only index, in ``work``. Only a
    wheel named after the package is taken back. With a ``store``, a wheel built before
    from the same source, tools and base image is reused (the build is reproducible)."""
    name = canonicalize_name(package_dir.name)
    source = stage_source(package_dir, work / "source", ignore=_SOURCE_IGNORED)
    key = hashlib.sha256("\n".join([
        _tree_digest(source), build_tools.path.name, _BUILD_SCRIPT,
        engine.image_id(BASE_IMAGE)]).encode()).hexdigest()[:32]
    kept = store / f"local-{name}-{key}" if store else None
    if kept and kept.is_dir() and (found := [p for p in kept.iterdir() if _is_wheel_of(p, name)]):
        on_line(f"{name}'s wheel from the same source was built before: {found[0].name}")
        return found[0]
    out = writable_dir(work / "out")
    confinement = Confinement(
        image=BASE_IMAGE, command=("python3", "-c", _BUILD_SCRIPT), limits=limits,
        read_only={"/src": source, "/wheels": build_tools.path}, writable={"/out": out},
        environment={"SOURCE_DATE_EPOCH": _SOURCE_DATE_EPOCH,
                     "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"},
        labels={"dev.shipyard.purpose": f"build-{name}", **(labels or {})})
    ended = Sandbox(engine, confinement).run(on_line)
    if ended.timed_out:
        raise WheelhouseError(f"building {name}'s wheel ran past {limits.seconds:g} s; the "
                              "sandbox was killed")
    if ended.exit_code != 0:
        cause = " (out of memory)" if ended.out_of_memory else ""
        raise WheelhouseError(f"building {name}'s wheel failed in the sandbox: exit "
                              f"{ended.exit_code}{cause}; its output is in the log above")
    wheels = [p for p in out.iterdir() if _is_wheel_of(p, name)]
    if len(wheels) != 1:
        raise WheelhouseError(f"building {name}'s wheel gave {len(wheels)} wheels named "
                              f"{name} (of {sorted(p.name for p in out.iterdir())})")
    taken = work / wheels[0].name
    shutil.copyfile(wheels[0], taken, follow_symlinks=False)
    shutil.rmtree(out)
    if kept:
        _keep(taken, kept)
    return taken


def _tree_digest(root: Path) -> str:
    """A hex digest of a folder's paths, executable bits, contents and link targets."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            digest.update(f"link {relative} {os.readlink(path)}\n".encode())
        elif path.is_file():
            executable = bool(path.stat().st_mode & 0o111)
            digest.update(f"file {relative} {executable}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _keep(wheel: Path, kept: Path) -> None:
    staging = kept.with_name(f".{kept.name}-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    shutil.copyfile(wheel, staging / wheel.name)
    try:
        staging.rename(kept)
    except OSError:
        shutil.rmtree(staging)  # another run kept the same wheel first


def _is_wheel_of(path: Path, name: str) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    try:
        return parse_wheel_filename(path.name)[0] == name
    except InvalidWheelFilename:
        return False


def _pip(argv: list[str], on_line: Callable[[str], None], cwd: Path,
         timeout_seconds: float) -> None:
    done = run_process(argv, cwd=cwd, env=os.environ, on_line=on_line,
                       timeout_seconds=timeout_seconds)
    if done.timed_out:
        raise WheelhouseTimedOut(
            f"`pip download` ran past {timeout_seconds:g} s and was killed (its last words: "
            f"{done.last_lines() or 'none'}); check that the package index answers, or "
            "raise SHIPYARD_PIP_TIMEOUT_SECONDS for a large set of wheels")
    if done.exit_code != 0:
        raise WheelhouseError(
            "`pip download` failed: " + done.last_lines(4) + " (every requirement needs a "
            f"wheel for CPython {TARGET_PYTHON} on manylinux x86_64: source distributions "
            "are never built)")
