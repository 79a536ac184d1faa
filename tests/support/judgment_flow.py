"""A pipeline with a manual judgment between two stages, for the judgment's tests and
``bench/judgment_latency.py``; registered with Prefect by :func:`register_deployments` (the
project's ``prefect.yaml`` stays as it is), and run by the stack's worker.

``judgment-probe`` is ``prepare`` → ``judgment`` → ``ship``. Run as a deployment it is a
top-level flow run, so its judgment suspends. ``judgment-probe-parent`` runs it as a
subflow from a ``child`` stage, as ``release`` runs ``ci``, so its judgment pauses.

This file is loaded by path in the worker's flow process: it imports only installed
packages, never ``tests``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.client.orchestration import get_client

from shipyard.adapters.background import BackgroundProcess
from shipyard.adapters.prefect import start_deployment
from shipyard.domain.pipeline import StageSpec
from shipyard.store import RunRecord, Store
from stages.judgment import manual_judgment
from stages.lifecycle import begin_run, child_stage, running
from stages.runtime import StageContext, StageResult, stage

__all__ = ["GRAPH", "PARENT", "PARENT_GRAPH", "PROBE", "flow_processes", "judgment_probe",
           "judgment_probe_parent", "register_deployments", "start_probe", "stop_worker"]

GRAPH = (StageSpec("prepare"), StageSpec("judgment", ("prepare",)),
         StageSpec("ship", ("judgment",)))
PARENT_GRAPH = (StageSpec("child"),)
PROBE = "judgment-probe/judgment-probe"
PARENT = "judgment-probe-parent/judgment-probe-parent"

_FILE = Path(__file__).resolve()
_PROJECT = _FILE.parents[2]


class Prepared(StageResult):
    pid: int

    def summary(self) -> str:
        return f"prepared in process {self.pid}"


class Shipped(StageResult):
    pid: int

    def summary(self) -> str:
        return f"shipped from process {self.pid}"


@stage("prepare")
async def prepare(ctx: StageContext) -> Prepared:
    await ctx.log("preparing")
    return Prepared(pid=os.getpid())


@stage("ship")
async def ship(ctx: StageContext) -> Shipped:
    await ctx.log("shipping")
    return Shipped(pid=os.getpid())


@flow(name="judgment-probe", flow_run_name="judgment-probe {subject}")
async def judgment_probe(subject: str = "probe → prod", timeout_seconds: float = 3600,
                         run_id: str | None = None) -> dict[str, Any]:
    """prepare → judgment → ship."""
    run = await begin_run("judgment-probe", GRAPH, run_id=run_id, trigger="test")
    async with running(run):
        prepared = await prepare(run)
        await manual_judgment(run, subject=subject, timeout_seconds=timeout_seconds)
        shipped = await ship(run)
    return {"run_id": run.run_id, "prepared_pid": prepared.pid, "shipped_pid": shipped.pid}


@flow(name="judgment-probe-parent")
async def judgment_probe_parent(subject: str = "child → prod", timeout_seconds: float = 3600,
                                run_id: str | None = None) -> dict[str, Any]:
    """One stage running ``judgment-probe`` as a subflow."""
    run = await begin_run("judgment-probe-parent", PARENT_GRAPH, run_id=run_id,
                          trigger="test")
    async with running(run), child_stage(run, "child") as outputs:
        child = await judgment_probe(subject=subject, timeout_seconds=timeout_seconds)
        outputs.update(child_run_id=child["run_id"], summary=f"run {child['run_id'][:8]}")
    return {"run_id": run.run_id, "child_run_id": child["run_id"]}


async def register_deployments(work_pool: str = "shipyard", *, suffix: str = "") -> None:
    """Register both flows as deployments on ``work_pool``, run from this checkout, named
    after their flow plus ``suffix``."""
    pull = [{"prefect.deployments.steps.set_working_directory": {"directory": str(_PROJECT)}}]
    entrypoint = str(_FILE.relative_to(_PROJECT))
    async with get_client() as client:
        for function in ("judgment_probe", "judgment_probe_parent"):
            name = function.replace("_", "-")
            flow_id = await client.create_flow_from_name(name)
            await client.create_deployment(
                flow_id=flow_id, name=name + suffix, entrypoint=f"{entrypoint}:{function}",
                work_pool_name=work_pool, path=str(_PROJECT), pull_steps=pull,
                tags=["shipyard", "test"])


async def start_probe(store: Store, deployment: str = PROBE, *, timeout_seconds: float = 3600,
                      subject: str = "probe → prod") -> RunRecord:
    """Record a queued run and hand it to ``deployment``, as ``shipyard deploy`` does."""
    graph = GRAPH if deployment.partition("/")[0] == PROBE.partition("/")[0] else PARENT_GRAPH
    record = store.create_run(deployment.partition("/")[0], graph, trigger="test")
    flow_run_id = await start_deployment(
        deployment, {"run_id": record.id, "timeout_seconds": timeout_seconds,
                     "subject": subject}, idempotency_key=record.id)
    return store.record_hand_over(record.id, flow_run_id)


def stop_worker(prefect_home: Path, pool: str = "shipyard") -> bool:
    """Stop the stack's Prefect worker as ``shipyard down`` does (its process group, two
    SIGTERMs, then SIGKILL); ``shipyard up --only prefect`` starts it again."""
    return BackgroundProcess(f"prefect-worker-{pool}", prefect_home).stop(terms=2)


def flow_processes(flow_run_id: str) -> list[int]:
    """The processes executing ``flow_run_id``: the worker starts each with its id in
    ``PREFECT__FLOW_RUN_ID``; the warm worker's forked run (whose environment in /proc is
    still its zygote's) carries it in its title instead."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (
                    marker in (proc / "environ").read_bytes().split(b"\0") or
                    marker in (proc / "cmdline").read_bytes()):
                found.append(int(proc.name))
        except OSError:
            continue
    return found
