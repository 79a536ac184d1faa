"""Talking to the Prefect server: starting deployments, waiting for flow runs, applying
``prefect.yaml``.

Stages and pipelines use Prefect's ``@flow`` and ``@task`` decorators directly; everything
that calls the Prefect API from outside a flow goes through here.
"""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import yaml
from prefect.client.orchestration import get_client
from prefect.deployments.flow_runs import arun_deployment
from prefect.exceptions import ObjectNotFound

from shipyard.domain.deployments import DeploymentSpec, InvalidProjectFile, parse_prefect_yaml

__all__ = [
    "FlowRunOutcome",
    "PrefectError",
    "PrefectUnavailable",
    "apply_deployments",
    "check_project",
    "ensure_work_pool",
    "flow_run_state",
    "start_deployment",
    "wait_for_flow_run",
]

_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class PrefectError(RuntimeError):
    """The Prefect server refused or could not be reached; the message says which."""


class PrefectUnavailable(PrefectError):
    """The Prefect server could not be reached, or answered that it cannot serve now (5xx):
    asking again later may work, asking again at once will not."""


@dataclass(frozen=True, slots=True)
class FlowRunOutcome:
    flow_run_id: str
    state: str  # Prefect's state type: COMPLETED, FAILED, CRASHED, CANCELLED, RUNNING...
    message: str

    @property
    def final(self) -> bool:
        return self.state in _FINAL


async def start_deployment(name: str, parameters: dict[str, Any], *,
                           idempotency_key: str | None = None) -> str:
    """Create a flow run of deployment ``name`` ("flow/deployment") without waiting for it.

    With ``idempotency_key``, asking twice returns the first flow run instead of a second.
    Raises :class:`PrefectUnavailable` when the server cannot be reached or fails, and
    :class:`PrefectError` when the deployment does not exist.
    """
    try:
        flow_run = await arun_deployment(name, parameters=parameters, timeout=0,
                                         idempotency_key=idempotency_key)
    except httpx.TransportError as err:
        raise PrefectUnavailable(f"the Prefect server cannot be reached: "
                                 f"{type(err).__name__}: {err}") from err
    except httpx.HTTPStatusError as err:
        if err.response.status_code >= 500:
            raise PrefectUnavailable(f"the Prefect server failed: HTTP "
                                     f"{err.response.status_code}") from err
        raise
    except ObjectNotFound as err:
        raise PrefectError(f"Prefect has no deployment {name!r}; `shipyard deployments "
                           "apply` (or `shipyard up`) registers it") from err
    return str(flow_run.id)


async def flow_run_state(flow_run_id: str) -> FlowRunOutcome:
    """The flow run's current state type (SCHEDULED, PENDING, RUNNING, COMPLETED, ...)."""
    async with get_client() as client:
        flow_run = await client.read_flow_run(UUID(flow_run_id))
    state = flow_run.state
    return FlowRunOutcome(flow_run_id, state.type.value if state else "UNKNOWN",
                          (state.message or "") if state else "")


async def wait_for_flow_run(flow_run_id: str, *, timeout_seconds: float,
                            poll_seconds: float = 0.5) -> FlowRunOutcome:
    """Poll until the flow run is final; raise TimeoutError after ``timeout_seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    async with get_client() as client:
        while True:
            flow_run = await client.read_flow_run(UUID(flow_run_id))
            state = flow_run.state
            if state is not None and state.type.value in _FINAL:
                return FlowRunOutcome(flow_run_id, state.type.value, state.message or "")
            if loop.time() > deadline:
                raise TimeoutError(
                    f"flow run {flow_run_id} still {state.type.value if state else 'unknown'} "
                    f"after {timeout_seconds:.0f}s; is a worker polling the work pool?")
            await asyncio.sleep(poll_seconds)


def _prefect(args: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", *args], cwd=cwd, env=env,
        capture_output=True, text=True, check=False, timeout=300,
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise PrefectError(f"`prefect {' '.join(args)}` failed: {' | '.join(detail)}")
    return result.stdout


def ensure_work_pool(name: str, *, project_dir: Path,
                     prefect_env: Mapping[str, str] | None = None) -> None:
    """Create the process work pool ``name`` if it is missing (no change if it exists)."""
    env = {**os.environ, **(prefect_env or {})}
    try:
        _prefect(["work-pool", "inspect", name], cwd=project_dir, env=env)
    except PrefectError:
        _prefect(["work-pool", "create", name, "--type", "process"], cwd=project_dir, env=env)


def check_project(project_dir: Path, *, work_pool: str) -> tuple[DeploymentSpec, ...]:
    """Validate ``project_dir/prefect.yaml`` and that each entrypoint's file defines its
    flow function; raise :class:`InvalidProjectFile` naming the entry otherwise."""
    path = project_dir / "prefect.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InvalidProjectFile(f"{path}: missing; run from a Shipyard checkout") from err
    except yaml.YAMLError as err:
        raise InvalidProjectFile(f"{path}: not valid YAML: {err}") from err
    specs = parse_prefect_yaml(raw, work_pool=work_pool)
    for spec in specs:
        source = project_dir / spec.path
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
        except (OSError, SyntaxError) as err:
            raise InvalidProjectFile(
                f"prefect.yaml: deployment {spec.name}: entrypoint: cannot read {spec.path}: "
                f"{err}") from err
        defined = {node.name for node in tree.body
                   if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
        if spec.function not in defined:
            raise InvalidProjectFile(
                f"prefect.yaml: deployment {spec.name}: entrypoint: {spec.path} defines no "
                f"function {spec.function!r}")
    return specs


def apply_deployments(project_dir: Path, *, work_pool: str,
                      prefect_env: Mapping[str, str] | None = None
                      ) -> tuple[DeploymentSpec, ...]:
    """Register every deployment of ``project_dir/prefect.yaml`` with the server, after
    :func:`check_project` passed (a malformed file registers nothing). Creates the work
    pool if it is missing.

    ``SHIPYARD_PROJECT_DIR`` is set to ``project_dir``, which the pull step uses as the
    working directory of flow runs, so a worker runs the code of this checkout.
    """
    specs = check_project(project_dir, work_pool=work_pool)
    ensure_work_pool(work_pool, project_dir=project_dir, prefect_env=prefect_env)
    env = {**os.environ, **(prefect_env or {}),
           "SHIPYARD_PROJECT_DIR": str(project_dir.resolve())}
    _prefect(["deploy", "--all"], cwd=project_dir, env=env)
    return specs
