"""The app catalog: what an ``apps/<name>/app.yaml`` descriptor says, validated.

Parsing is pure: callers read the YAML and hand the mapping in. Errors name the file's field
and the fix, so a broken descriptor fails the stage that reads it with a useful message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard.domain.pipeline import PipelineGraph, StageSpec

__all__ = ["APP_NAME", "AppDescriptor", "InvalidDescriptor", "deploy_stages",
           "parse_descriptor", "validate_app_name"]

APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,38}[a-z0-9]")


class InvalidDescriptor(ValueError):
    """An ``app.yaml`` that cannot be used; the message names the field."""


@dataclass(frozen=True, slots=True)
class AppDescriptor:
    name: str
    port: int
    liveness_path: str
    readiness_path: str
    depends_on: tuple[str, ...]
    replicas: Mapping[str, int] = field(default_factory=dict)


def validate_app_name(name: str) -> str:
    """Return ``name`` if it can name an app (a DNS label: lowercase letters, digits, '-')."""
    if not APP_NAME.fullmatch(name):
        raise ValueError(
            f"app name {name!r} must be 2-40 lowercase letters, digits or '-', "
            "starting with a letter (it becomes a Kubernetes name)"
        )
    return name


def parse_descriptor(raw: object, *, source: str) -> AppDescriptor:
    """Validate the mapping read from ``source`` (a path, for messages) into a descriptor."""
    if not isinstance(raw, Mapping):
        raise InvalidDescriptor(f"{source}: must be a mapping of fields, not {_kind(raw)}")
    name = _field(raw, "name", str, source)
    try:
        validate_app_name(name)
    except ValueError as err:
        raise InvalidDescriptor(f"{source}: name: {err}") from err
    port = _field(raw, "port", int, source)
    if not 1 <= port <= 65535:
        raise InvalidDescriptor(f"{source}: port: {port} is not a TCP port (1-65535)")
    health = _field(raw, "health", Mapping, source)
    paths = []
    for key in ("liveness", "readiness"):
        path = health.get(key)
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidDescriptor(f"{source}: health.{key}: must be a path starting with '/'")
        paths.append(path)
    depends_on = raw.get("depends_on", [])
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        raise InvalidDescriptor(f"{source}: depends_on: must be a list of app names")
    if name in depends_on:
        raise InvalidDescriptor(f"{source}: depends_on: an app cannot depend on itself")
    replicas = raw.get("replicas", {})
    if not isinstance(replicas, Mapping) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in replicas.items()
    ):
        raise InvalidDescriptor(
            f"{source}: replicas: must map environment names to replica counts (>= 0)")
    return AppDescriptor(name=name, port=port, liveness_path=paths[0], readiness_path=paths[1],
                         depends_on=tuple(depends_on), replicas=dict(replicas))


def _field(raw: Mapping[str, Any], key: str, kind: type, source: str) -> Any:
    if key not in raw:
        raise InvalidDescriptor(f"{source}: {key}: missing; add it to the descriptor")
    value = raw[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidDescriptor(
            f"{source}: {key}: must be {kind.__name__.lower()}, not {_kind(value)}")
    return value


def _kind(value: object) -> str:
    return type(value).__name__


def deploy_stages(descriptors: Iterable[AppDescriptor], *, after: str) -> tuple[StageSpec, ...]:
    """One ``cd:<app>`` stage per app, each after stage ``after`` and after the deploys of
    the apps it depends on among those given (apps outside the set are already running).

    Independent apps form parallel branches. Raises
    :class:`~shipyard.domain.pipeline.InvalidPipeline` when dependencies form a cycle.
    """
    given = {d.name: d for d in descriptors}
    specs = tuple(
        StageSpec(f"cd:{d.name}",
                  (after, *(f"cd:{dep}" for dep in d.depends_on if dep in given)),
                  f"deploy {d.name}")
        for d in sorted(given.values(), key=lambda d: d.name)
    )
    PipelineGraph.of([StageSpec(after), *specs])
    return specs
