"""The ``ci`` pipeline (Jenkins's role): check a commit out, find which apps it changes,
then per changed app, in parallel: its tests, its image build, the push to the registry.

Stage graph: ``checkout`` → ``changes`` → for each changed app ``test:<app>`` →
``build:<app>`` → ``push:<app>``. An app whose sources already have an image is not
rebuilt: its digest is reused. ``push:<app>`` runs only on branches matching
``SHIPYARD_PUSH_BRANCHES`` (Jenkins's ``when { branch ... }``); elsewhere it is skipped
with reason ``WhenNotMet``. Post actions: the run's worktree and build contexts are always
removed at the end.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from prefect import flow

from pipelines.outcomes import CiOutcome
from shipyard.domain.catalog import validate_app_name
from shipyard.domain.deployments import FIRST_STAGES
from shipyard.domain.images import ImageRef
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.triggers import branch_matches
from stages.catalog import discover_apps
from stages.changes import detect_changes
from stages.checkout import checkout
from stages.images import build_image, push_image
from stages.lifecycle import begin_run, extend_run, running, skip_stage
from stages.post import clean_up
from stages.runtime import RunContext, current_settings
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
    branch: str | None = None,
    all_apps: bool = False,
    restart_of: str | None = None,
    restart_from: str | None = None,
) -> CiOutcome:
    """Check ``ref`` of ``repo`` out; test, build and push the apps it changes among
    ``apps`` (default: every app). ``branch`` is the branch the commit was pushed to (for
    ``when`` rules; default ``ref``); ``all_apps`` rebuilds every app even if unchanged.
    ``restart_of`` and ``restart_from`` restart run ``restart_of`` from that stage: the
    stages before it reuse that run's outputs (see :mod:`stages.restart`); the checkout
    runs again, since the stages after it work in its worktree.

    Returns the run id, the commit, each built app's test summary and every app's image;
    raises when the run did not succeed, so the Prefect flow run fails with it.
    """
    for app in apps or []:
        validate_app_name(app)
    run = await begin_run(
        "ci", FIRST_STAGES["ci"], run_id=run_id, trigger=trigger, actor=actor,
        app=apps[0] if apps and len(apps) == 1 else None, repo_url=repo, ref=ref,
        parameters={"apps": apps, "branch": branch, "all_apps": all_apps},
        restart_of=restart_of, restart_from=restart_from,
    )
    images: dict[str, ImageRef] = {}
    tests: dict[str, str] = {}
    try:
        async with running(run):
            source = await checkout(run, repo, ref)
            names = apps or discover_apps(Path(source.workspace))
            await extend_run(run, [StageSpec("changes", ("checkout",), "change detection")])
            changes = await detect_changes(run, source.workspace, source.sha, names,
                                           force=all_apps)
            images.update(changes.reused)
            await extend_run(run, [spec for app in changes.changed for spec in (
                StageSpec(f"test:{app}", ("changes",), f"test {app}"),
                StageSpec(f"build:{app}", (f"test:{app}",), f"build {app}'s image"),
                StageSpec(f"push:{app}", (f"build:{app}",), f"push {app}'s image"))])
            push = branch_matches(current_settings().push_branches, branch or ref)
            results = await asyncio.gather(
                *(_ship(run, source.workspace, source.sha, app,
                        changes.source_keys[app], push) for app in changes.changed),
                return_exceptions=True)
            for app, result in zip(changes.changed, results, strict=True):
                if isinstance(result, tuple):
                    tests[app] = result[0].summary()
                    if result[1]:
                        images[app] = result[1]
    finally:
        await clean_up(run, repo)
    return CiOutcome(run_id=run.run_id, commit=source.sha, tests=tests, images=images)


async def _ship(run: RunContext, workspace: str, commit: str, app: str, key: str,
                push: bool) -> tuple[TestResult, ImageRef | None]:
    """Test, build and (when allowed) push one app; returns its tests and its image."""
    tested = await unit_tests(run, workspace, app, stage_ref=f"test:{app}")
    built = await build_image(run, workspace, app, commit, key, stage_ref=f"build:{app}")
    if not push:
        await skip_stage(run, f"push:{app}", reason="WhenNotMet",
                         message="the branch matches none of SHIPYARD_PUSH_BRANCHES")
        return tested, None
    pushed = await push_image(run, app, built.reference, commit, stage_ref=f"push:{app}")
    return tested, pushed.image
