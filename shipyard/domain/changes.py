"""Which apps a commit changes, decided by content, not by guesswork.

An app's *source key* hashes everything its image is made from: the git tree of
``apps/<app>`` (code, Dockerfile, requirements), the trees of the shared packages its
requirements name (``apps/servicekit``), and the versions its wheels are pinned to. Two
commits with the same key build the same image, so an app whose key has an image already
rebuilds nothing; any other app is changed. The changed files between the commit of that
earlier image and this one say why, for the log.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["AppChange", "requirement_names", "source_key", "source_tag", "why_changed"]

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_names(requirements_text: str) -> list[str]:
    """The project names a ``requirements.txt`` lists (comments and blanks ignored)."""
    names = []
    for line in requirements_text.splitlines():
        match = _NAME.match(line.split("#", 1)[0])
        if match:
            names.append(match[1].lower().replace("_", "-"))
    return names


def source_key(app_tree: str, shared_trees: Mapping[str, str], pins: str) -> str:
    """A hex digest of an app's image inputs: its tree, the shared packages' trees (by
    name), and the pinned dependency versions."""
    digest = hashlib.sha256(f"app {app_tree}\n".encode())
    for name in sorted(shared_trees):
        digest.update(f"shared {name} {shared_trees[name]}\n".encode())
    digest.update(pins.encode())
    return digest.hexdigest()


def source_tag(key: str) -> str:
    """The image tag that names a source key: an image is found again by its inputs."""
    return f"src-{key[:20]}"


@dataclass(frozen=True, slots=True)
class AppChange:
    """The verdict for one app: rebuild it, or reuse ``reuse_digest``."""

    app: str
    key: str
    changed: bool
    reason: str
    reuse_digest: str | None = None
    reuse_commit: str | None = None


def why_changed(app: str, shared: Sequence[str], files: Iterable[str]) -> list[str]:
    """The ``files`` (paths in the repository) that belong to ``app``'s inputs."""
    prefixes = [f"apps/{app}/", *(f"apps/{name}/" for name in shared)]
    return sorted(f for f in files if any(f.startswith(p) for p in prefixes))
