"""Reading the app catalog of a checkout: which apps exist and what their descriptors say."""

from __future__ import annotations

from pathlib import Path

import yaml

from shipyard.domain.catalog import AppDescriptor, InvalidDescriptor, parse_descriptor

__all__ = ["discover_apps", "read_descriptor"]


def discover_apps(root: Path) -> list[str]:
    """The names of the apps under ``root/apps`` (each directory with an ``app.yaml``),
    sorted."""
    return sorted(p.parent.name for p in (root / "apps").glob("*/app.yaml"))


def read_descriptor(root: Path, app: str) -> AppDescriptor:
    """Parse and validate ``root/apps/<app>/app.yaml``; :class:`InvalidDescriptor` names
    the file and field on any problem."""
    path = root / "apps" / app / "app.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InvalidDescriptor(f"{path}: missing; there is no app named {app!r}") from err
    except yaml.YAMLError as err:
        raise InvalidDescriptor(f"{path}: not valid YAML: {err}") from err
    descriptor = parse_descriptor(raw, source=str(path))
    if descriptor.name != app:
        raise InvalidDescriptor(
            f"{path}: name: is {descriptor.name!r} but the directory is {app!r}; make them equal")
    return descriptor
