"""The ``ci`` pipeline (Jenkins's role): check out a commit, then test each app in parallel.

Stage graph: ``checkout`` → ``test:<app>`` for every app asked for (all apps of the
checkout by default). Image build and push join in a later issue.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prefect import flow

from shipyard.domain.catalog import validate_app_name
from shipyard.domain.deployments import FIRST_STAGES
from shipyard.domain.pipeline import StageSpec
from stages.catalog import discover_apps
from stages.checkout import checkout
from stages.lifecycle import begin_run, extend_run, running
from stages.unit_tests import TestResult, unit_tests

__all__ = ["ci_flow"]


@flow(name="ci", flow_run_name="ci {ref}")
async def ci_flow(
    repo: str,
    ref: str = "main",
    apps: list[str] | None = None,
    run_id: str | None = None,
    trigger: str = "manual",
    actor: str = "",
) -> dict[str, Any]:
    """Check ``ref`` of ``repo`` out and run the tests of ``apps`` (default: every app).

    Returns the run id, the commit and each app's test summary; raises when the run did
    not succeed, so the Prefect flow run fails with it.
    """
    for app in apps or []:
        validate_app_name(app)
    run = await begin_run(
        "ci", FIRST_STAGES["ci"], run_id=run_id, trigger=trigger, actor=actor,
        app=apps[0] if apps and len(apps) == 1 else None, repo_url=repo, ref=ref,
        parameters={"apps": apps},
    )
    async with running(run):
        source = await checkout(run, repo, ref)
        names = apps or discover_apps(Path(source.workspace))
        await extend_run(run, [StageSpec(f"test:{app}", ("checkout",), f"test {app}")
                               for app in names])
        results = await asyncio.gather(
            *(unit_tests(run, source.workspace, app, stage_ref=f"test:{app}")
              for app in names),
            return_exceptions=True,
        )
    # running() raised if any stage failed, so every result here is a TestResult.
    return {"run_id": run.run_id, "commit": source.sha,
            "tests": {app: r.summary() for app, r in zip(names, results, strict=True)
                      if isinstance(r, TestResult)}}
