"""Talking to the Prefect server: starting deployments, waiting for flow runs, resuming
paused ones, applying ``prefect.yaml``.

Stages and pipelines use Prefect's ``@flow`` and ``@task`` decorators directly; everything
that calls the Prefect API from outside a flow goes through here.

Every exchange with the server has a deadline in all (:data:`PREFECT_CALL_TIMEOUT_SECONDS`),
over the client's own per-request timeout (``PREFECT_API_REQUEST_TIMEOUT``) and retries: a
server that does not answer is :class:`PrefectUnavailable` naming what was asked, not a
caller that waits for minutes. The Prefect CLI runs through
:func:`~shipyard.adapters.process.run_process`, with a deadline too.

The API asks for an auth string (``PREFECT_API_AUTH_STRING``, see
:mod:`shipyard.adapters.prefect_server`); a client without it, or with another, is answered
401, which is :class:`PrefectUnauthorized` here: no request will do until the client's
configuration is fixed.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.events.actions import ResumeFlowRun
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventResourceFilter
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

from shipyard.adapters.prefect_api import start_deployment
from shipyard.adapters.prefect_errors import UNAUTHORIZED as _UNAUTHORIZED
from shipyard.adapters.prefect_errors import PrefectError, PrefectUnauthorized, PrefectUnavailable
from shipyard.adapters.process import run_process
from shipyard.domain.deployments import DeploymentSpec, InvalidProjectFile, parse_prefect_yaml
from shipyard.domain.sweeps import FlowRunView

__all__ = [
    "PREFECT_CALL_TIMEOUT_SECONDS",
    "PREFECT_CLI_TIMEOUT_SECONDS",
    "FlowRunNotPaused",
    "FlowRunOutcome",
    "PrefectError",
    "PrefectUnauthorized",
    "PrefectUnavailable",
    "apply_deployments",
    "arm_resume_timer",
    "cancel_flow_run",
    "check_project",
    "crash_flow_run",
    "disarm_resume_timer",
    "ensure_work_pool",
    "flow_run_state",
    "flow_run_views",
    "resume_with_input",
    "start_deployment",
    "subflow_run_ids",
    "wait_for_flow_run",
    "watch_flow_run_states",
]

_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

PREFECT_CALL_TIMEOUT_SECONDS = 120.0
"""How long one exchange with the Prefect server may take in all, the client's retries
included (each request has ``PREFECT_API_REQUEST_TIMEOUT``, 60 s by default)."""
PREFECT_CLI_TIMEOUT_SECONDS = 300.0
"""How long one ``prefect`` command (``deploy --all``, a work pool's creation) may run."""


class FlowRunNotPaused(PrefectError):
    """The flow run is not paused or suspended (any more): someone resumed it already, its
    pause expired, or it ended."""


@contextlib.asynccontextmanager
async def _within(subject: str) -> AsyncIterator[None]:
    """The block gets :data:`PREFECT_CALL_TIMEOUT_SECONDS`; past it, it is cancelled and
    :class:`PrefectUnavailable` names ``subject`` (a TimeoutError of the block's own passes
    as it is)."""
    deadline = asyncio.timeout(PREFECT_CALL_TIMEOUT_SECONDS)
    try:
        async with deadline:
            yield
    except TimeoutError as err:
        if not deadline.expired():
            raise
        raise PrefectUnavailable(
            f"the Prefect server did not answer about {subject} within "
            f"{PREFECT_CALL_TIMEOUT_SECONDS:g} s; `shipyard status` shows whether it runs "
            "(PREFECT_API_REQUEST_TIMEOUT bounds each of its requests)") from err


@dataclass(frozen=True, slots=True)
class FlowRunOutcome:
    flow_run_id: str
    state: str  # Prefect's state type: COMPLETED, FAILED, CRASHED, CANCELLED, RUNNING...
    message: str

    @property
    def final(self) -> bool:
        return self.state in _FINAL


FLOW_RUN_EVENT_PREFIX = "prefect.flow-run."
EVENT_RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)


async def watch_flow_run_states(flow_run_id: str, on_state: Callable[[str], None]) -> None:
    """Until cancelled, call ``on_state`` with the state's name (``Pending``, ``Running``,
    ``Completed``...) each time Prefect's events websocket reports a state change of
    ``flow_run_id``: a follower hears of a hand-over, a start and an end within
    milliseconds, without polling. A lost socket is reopened with backoff; events in the
    gap are lost, so a follower still reads the run's state now and then."""
    event_filter = EventFilter(resource=EventResourceFilter(
        id=[f"prefect.flow-run.{flow_run_id}"]))
    failures = 0
    while True:
        try:
            async with get_events_subscriber(filter=event_filter) as subscriber:
                failures = 0
                async for event in subscriber:
                    if event.event.startswith(FLOW_RUN_EVENT_PREFIX):
                        on_state(event.event.removeprefix(FLOW_RUN_EVENT_PREFIX))
        except asyncio.CancelledError:
            raise
        except Exception:  # the server restarted, the socket dropped: listen again
            await asyncio.sleep(EVENT_RECONNECT_SECONDS[
                min(failures, len(EVENT_RECONNECT_SECONDS) - 1)])
            failures += 1


async def flow_run_state(flow_run_id: str) -> FlowRunOutcome:
    """The flow run's current state type (SCHEDULED, PENDING, RUNNING, COMPLETED, ...)."""
    async with _within(f"flow run {flow_run_id}"), get_client() as client:
        flow_run = await client.read_flow_run(UUID(flow_run_id))
    state = flow_run.state
    return FlowRunOutcome(flow_run_id, state.type.value if state else "UNKNOWN",
                          (state.message or "") if state else "")


async def flow_run_views(flow_run_ids: Sequence[str]) -> dict[str, FlowRunView]:
    """Prefect's state of each of ``flow_run_ids`` (one request per 200), by id; an id
    Prefect no longer has is absent. Raises :class:`PrefectUnavailable` when the server
    cannot be asked, so silence is never read as absence."""
    views: dict[str, FlowRunView] = {}
    try:
        async with _within("flow runs"), get_client() as client:
            for start in range(0, len(flow_run_ids), 200):
                batch = [UUID(i) for i in flow_run_ids[start:start + 200]]
                for flow_run in await client.read_flow_runs(
                        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=batch)),
                        limit=len(batch)):
                    state = flow_run.state
                    views[str(flow_run.id)] = FlowRunView(
                        state.type.value if state else "UNKNOWN",
                        (state.message or "") if state else "",
                        state.timestamp if state else None)
    except (httpx.HTTPError, OSError) as err:
        raise _refusal(err, "flow runs") from err
    return views


async def crash_flow_run(flow_run_id: str, *, message: str) -> None:
    """Mark a flow run whose process is gone as crashed, so Prefect's UI says what the
    store says; one that ended or that Prefect no longer has is left as it is."""
    from prefect.states import Crashed

    try:
        async with _within(f"crashing flow run {flow_run_id}"), get_client() as client:
            flow_run = await client.read_flow_run(UUID(flow_run_id))
            if flow_run.state is not None and flow_run.state.type.value in _FINAL:
                return
            await client.set_flow_run_state(UUID(flow_run_id), Crashed(message=message),
                                            force=True)
    except ObjectNotFound:
        return
    except (httpx.HTTPError, OSError) as err:
        raise _refusal(err, f"flow run {flow_run_id}") from err


async def cancel_flow_run(flow_run_id: str, *, message: str) -> str:
    """Cancel a flow run: a running one is set Cancelling, so its worker stops the flow's
    process and marks it Cancelled; one that runs nowhere (scheduled, pending, paused or
    suspended) is set Cancelled at once. Returns the state type set; a final flow run is
    left as it is (its type is returned)."""
    from prefect.client.schemas.objects import State
    from prefect.states import Cancelled, Cancelling

    try:
        async with _within(f"cancelling flow run {flow_run_id}"), get_client() as client:
            flow_run = await client.read_flow_run(UUID(flow_run_id))
            current = flow_run.state.type.value if flow_run.state else "UNKNOWN"
            if current in _FINAL:
                return current
            state: State[Any] = (Cancelling(message=message) if current == "RUNNING"
                                 else Cancelled(message=message))
            await client.set_flow_run_state(UUID(flow_run_id), state, force=True)
            return str(state.type.value)
    except (httpx.HTTPError, OSError) as err:
        raise _refusal(err, f"cancelling flow run {flow_run_id}") from err


async def wait_for_flow_run(flow_run_id: str, *, timeout_seconds: float,
                            poll_seconds: float = 0.5) -> FlowRunOutcome:
    """Poll until the flow run is final; raise TimeoutError after ``timeout_seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    async with get_client() as client:
        while True:
            async with _within(f"flow run {flow_run_id}"):
                flow_run = await client.read_flow_run(UUID(flow_run_id))
            state = flow_run.state
            if state is not None and state.type.value in _FINAL:
                return FlowRunOutcome(flow_run_id, state.type.value, state.message or "")
            if loop.time() > deadline:
                raise TimeoutError(
                    f"flow run {flow_run_id} still {state.type.value if state else 'unknown'} "
                    f"after {timeout_seconds:.0f}s; is a worker polling the work pool?")
            await asyncio.sleep(poll_seconds)


async def resume_with_input(flow_run_id: str, run_input: Mapping[str, Any]) -> None:
    """Resume a paused or suspended flow run with ``run_input``, which Prefect checks
    against the schema the flow saved when it paused.

    Raises :class:`FlowRunNotPaused` when the flow run is not waiting (any more),
    :class:`PrefectUnavailable` when the server cannot be reached, and
    :class:`PrefectError` when Prefect refuses the input (the message says why).
    """
    try:
        async with _within(f"resuming flow run {flow_run_id}"), get_client() as client:
            result = await client.resume_flow_run(UUID(flow_run_id),
                                                  run_input=dict(run_input))
    except (httpx.TransportError, httpx.HTTPStatusError, ObjectNotFound) as err:
        raise _refusal(err, f"flow run {flow_run_id}") from err
    reason = getattr(result.details, "reason", "") or ""
    if result.status is SetStateStatus.ABORT:
        raise FlowRunNotPaused(f"flow run {flow_run_id} is not paused: {reason}")
    if result.status is SetStateStatus.REJECT:
        if result.state is not None and result.state.type is StateType.FAILED:
            raise FlowRunNotPaused(f"flow run {flow_run_id} can no longer resume: {reason}")
        raise PrefectError(f"Prefect refused to resume flow run {flow_run_id}: {reason}")


async def arm_resume_timer(flow_run_id: str, *, name: str, seconds: float) -> None:
    """Have Prefect resume the flow run, without input, if it stays suspended ``seconds``
    after its next suspension: an automation named ``name`` with a proactive trigger, so
    the timer lives in Prefect's database, not in any process. It fires once per
    suspension and can resume only a run that is still paused (Prefect refuses the
    others); :func:`disarm_resume_timer` deletes it. Prefect evaluates such triggers every
    5 s and waits at least 10 s."""
    resource = f"prefect.flow-run.{flow_run_id}"
    automation = AutomationCore(
        name=name,
        description="Shipyard: resume a suspended flow run whose judgment timed out",
        trigger=EventTrigger(
            match={"prefect.resource.id": resource}, for_each={"prefect.resource.id"},
            after={"prefect.flow-run.Suspended"}, expect={"prefect.flow-run.Resuming"},
            posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=max(seconds, 10.0))),
        actions=[ResumeFlowRun()])
    try:
        async with _within(f"automation {name!r}"), get_client() as client:
            await client.create_automation(automation)
    except (httpx.TransportError, httpx.HTTPStatusError) as err:
        raise _refusal(err, f"automation {name!r}") from err


async def disarm_resume_timer(name: str) -> None:
    """Delete the automations named ``name`` (none is fine)."""
    try:
        async with _within(f"automation {name!r}"), get_client() as client:
            for automation in await client.read_automations_by_name(name):
                await client.delete_automation(automation.id)
    except (httpx.TransportError, httpx.HTTPStatusError) as err:
        raise _refusal(err, f"automation {name!r}") from err


async def subflow_run_ids(flow_run_id: str) -> list[str]:
    """The flow runs started as subflows of ``flow_run_id`` (one level down)."""
    found: list[str] = []
    try:
        async with _within(f"the subflows of flow run {flow_run_id}"), \
                get_client() as client:
            while True:
                children = FlowRunFilterParentFlowRunId(any_=[UUID(flow_run_id)])
                page = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(parent_flow_run_id=children), limit=200,
                    offset=len(found))
                found.extend(str(flow_run.id) for flow_run in page)
                if len(page) < 200:
                    return found
    except (httpx.TransportError, httpx.HTTPStatusError) as err:
        raise _refusal(err, f"flow run {flow_run_id}") from err


def _refusal(err: Exception, subject: str) -> PrefectError:
    if isinstance(err, httpx.TransportError):
        return PrefectUnavailable(f"the Prefect server cannot be reached: "
                                  f"{type(err).__name__}: {err}")
    if isinstance(err, httpx.HTTPStatusError) and err.response.status_code >= 500:
        return PrefectUnavailable(f"the Prefect server failed: HTTP "
                                  f"{err.response.status_code}")
    if isinstance(err, httpx.HTTPStatusError) and err.response.status_code == 401:
        return PrefectUnauthorized(_UNAUTHORIZED)
    if isinstance(err, ObjectNotFound) or (
            isinstance(err, httpx.HTTPStatusError) and err.response.status_code == 404):
        return PrefectError(f"Prefect has no {subject}")
    return PrefectError(f"Prefect refused a request about {subject}: {err}")


def _prefect(args: list[str], *, cwd: Path, env: dict[str, str]) -> None:
    what = f"`prefect {' '.join(args)}`"
    done = run_process([sys.executable, "-m", "prefect", "--no-prompt", *args], cwd=cwd,
                       env=env, timeout_seconds=PREFECT_CLI_TIMEOUT_SECONDS)
    if done.timed_out:
        raise PrefectUnavailable(f"{what} ran past {PREFECT_CLI_TIMEOUT_SECONDS:g} s and was "
                                 f"killed ({done.last_lines(2) or 'no output'}); `shipyard "
                                 "status` shows whether the Prefect server answers")
    if done.exit_code != 0:
        raise PrefectError(f"{what} failed: {done.last_lines(5)}")


def ensure_work_pool(name: str, *, project_dir: Path, pool_type: str = "process",
                     prefect_env: Mapping[str, str] | None = None) -> None:
    """Create the work pool ``name`` of ``pool_type`` if it is missing (no change if it
    exists: a process pool and a ``shipyard-warm`` pool share one job template, so either
    worker runs either pool's flow runs)."""
    env = {**os.environ, **(prefect_env or {})}
    try:
        _prefect(["work-pool", "inspect", name], cwd=project_dir, env=env)
    except PrefectError:
        _prefect(["work-pool", "create", name, "--type", pool_type], cwd=project_dir, env=env)


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


def apply_deployments(project_dir: Path, *, work_pool: str, pool_type: str = "process",
                      prefect_env: Mapping[str, str] | None = None
                      ) -> tuple[DeploymentSpec, ...]:
    """Register every deployment of ``project_dir/prefect.yaml`` with the server, after
    :func:`check_project` passed (a malformed file registers nothing). Creates the work
    pool if it is missing.

    ``SHIPYARD_PROJECT_DIR`` is set to ``project_dir``, which the pull step uses as the
    working directory of flow runs, so a worker runs the code of this checkout.
    """
    specs = check_project(project_dir, work_pool=work_pool)
    ensure_work_pool(work_pool, project_dir=project_dir, pool_type=pool_type,
                     prefect_env=prefect_env)
    env = {**os.environ, **(prefect_env or {}),
           "SHIPYARD_PROJECT_DIR": str(project_dir.resolve())}
    _prefect(["deploy", "--all"], cwd=project_dir, env=env)
    return specs
