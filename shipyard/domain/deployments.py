"""What ``prefect.yaml`` must declare for Shipyard, checked before anything is deployed.

Prefect reports a malformed entry late (at deploy time, half-way through the list, or when
a worker fails to load the flow). Validating the parsed file first lets ``shipyard
deployments apply`` refuse it whole, naming the entry and field, with nothing registered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from shipyard.domain.pipeline import StageSpec

__all__ = ["FIRST_STAGES", "REQUIRED_DEPLOYMENTS", "DeploymentSpec", "InvalidProjectFile",
           "parse_prefect_yaml"]

REQUIRED_DEPLOYMENTS = ("ci", "cd", "release", "promote", "rollback")

FIRST_STAGES: Mapping[str, tuple[StageSpec, ...]] = {
    "ci": (StageSpec("checkout"),),
    "cd": (StageSpec("plan"),),
    "release": (StageSpec("ci"),),
    "promote": (StageSpec("plan"),),
    "rollback": (StageSpec("rollback"),),
}
"""The stages each pipeline knows before it runs; more (one per app) join once it runs.
A run recorded before its flow starts (by the CLI or the webhook) starts with these."""

_ENTRYPOINT = re.compile(r"(?P<path>[\w./-]+\.py):(?P<function>[A-Za-z_]\w*)")
_NAME = re.compile(r"[a-z][a-z0-9-]*")


class InvalidProjectFile(ValueError):
    """``prefect.yaml`` cannot be deployed; the message names the entry and the field."""


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """One deployment entry of ``prefect.yaml``, validated."""

    name: str
    path: str  # the flow's module, relative to the project
    function: str  # the flow function in it
    work_pool: str

    @property
    def entrypoint(self) -> str:
        return f"{self.path}:{self.function}"


def parse_prefect_yaml(raw: object, *, work_pool: str) -> tuple[DeploymentSpec, ...]:
    """Validate the parsed ``prefect.yaml``: every required deployment present once, each
    entry with a name, a ``path.py:function`` entrypoint inside the project and the work
    pool ``work_pool``."""
    if not isinstance(raw, Mapping):
        raise InvalidProjectFile("prefect.yaml: must be a mapping with a 'deployments' list")
    entries = raw.get("deployments")
    if not isinstance(entries, list) or not entries:
        raise InvalidProjectFile("prefect.yaml: deployments: must be a non-empty list")
    specs: list[DeploymentSpec] = []
    for index, entry in enumerate(entries):
        specs.append(_parse_entry(entry, f"prefect.yaml: deployments[{index}]", work_pool))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidProjectFile(
            f"prefect.yaml: deployments: {', '.join(duplicates)} declared more than once")
    missing = [n for n in REQUIRED_DEPLOYMENTS if n not in names]
    if missing:
        raise InvalidProjectFile(
            f"prefect.yaml: deployments: missing {', '.join(missing)}; Shipyard needs "
            f"{', '.join(REQUIRED_DEPLOYMENTS)}")
    return tuple(specs)


def _parse_entry(entry: object, where: str, work_pool: str) -> DeploymentSpec:
    if not isinstance(entry, Mapping):
        raise InvalidProjectFile(f"{where}: must be a mapping with name, entrypoint, work_pool")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidProjectFile(
            f"{where}: name: {name!r} must be lowercase letters, digits and '-'")
    where = f"{where} ({name})"
    entrypoint = entry.get("entrypoint")
    match = _ENTRYPOINT.fullmatch(entrypoint) if isinstance(entrypoint, str) else None
    if match is None:
        raise InvalidProjectFile(
            f"{where}: entrypoint: {entrypoint!r} must look like 'pipelines/ci.py:ci_flow'")
    path = match["path"]
    if path.startswith("/") or ".." in path.split("/"):
        raise InvalidProjectFile(
            f"{where}: entrypoint: {path!r} must be a path inside the project")
    pool = entry.get("work_pool")
    pool_name = pool.get("name") if isinstance(pool, Mapping) else None
    if pool_name != work_pool:
        raise InvalidProjectFile(
            f"{where}: work_pool.name: is {pool_name!r}; it must be {work_pool!r}, the pool "
            "Shipyard's worker polls")
    return DeploymentSpec(name=name, path=path, function=match["function"], work_pool=work_pool)
