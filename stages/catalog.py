"""Reading the app catalog of a checkout: which apps exist and what their descriptors say."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.git import GitCheckout, GitError
from shipyard.domain.catalog import AppDescriptor, InvalidDescriptor, parse_descriptor

if TYPE_CHECKING:
    from shipyard.settings import Settings

__all__ = ["descriptors_at", "discover_apps", "git_for", "read_descriptor",
           "read_descriptor_at"]


def git_for(settings: Settings) -> GitCheckout:
    """The git checkout every stage uses: the settings' mirrors and worktrees, and their
    deadline for each git command (``SHIPYARD_GIT_TIMEOUT_SECONDS``)."""
    return GitCheckout(settings.git_cache_dir, settings.workspaces_dir,
                       timeout_seconds=settings.git_timeout_seconds)


def discover_apps(root: Path) -> list[str]:
    """The names of the apps under ``root/apps`` (each directory with an ``app.yaml``),
    sorted."""
    return sorted(p.parent.name for p in (root / "apps").glob("*/app.yaml"))


def read_descriptor(root: Path, app: str) -> AppDescriptor:
    """Parse and validate ``root/apps/<app>/app.yaml``; :class:`InvalidDescriptor` names
    the file and field on any problem."""
    path = root / "apps" / app / "app.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    return _descriptor(text, str(path), app)


def read_descriptor_at(git: GitCheckout, repo: str, commit: str, app: str) -> AppDescriptor:
    """The same, read from ``commit`` of ``repo`` (no worktree needed)."""
    path = f"apps/{app}/app.yaml"
    try:
        text = git.read_file(repo, commit, path)
    except GitError as err:
        raise InvalidDescriptor(f"{repo}@{commit[:12]}:{path}: {err}") from err
    return _descriptor(text, f"{repo}@{commit[:12]}:{path}", app)


def _descriptor(text: str | None, source: str, app: str) -> AppDescriptor:
    if text is None:
        raise InvalidDescriptor(f"{source}: missing; there is no app named {app!r}")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InvalidDescriptor(f"{source}: not valid YAML: {err}") from err
    descriptor = parse_descriptor(raw, source=source)
    if descriptor.name != app:
        raise InvalidDescriptor(f"{source}: name: is {descriptor.name!r} but the directory "
                                f"is {app!r}; make them equal")
    return descriptor


async def descriptors_at(repo: str, commit: str, apps: list[str]) -> list[AppDescriptor]:
    """The descriptors of ``apps`` at ``commit`` of ``repo``, read from the cached mirror."""
    # Here, not at the top: the runtime imports Prefect, which `shipyard apps` need not load.
    from stages.runtime import current_settings

    git = git_for(current_settings())
    return [await run_blocking(read_descriptor_at, git, repo, commit, app) for app in apps]
