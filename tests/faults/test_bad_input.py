"""Bad input everywhere gets a clear error before anything is applied, and nothing changes
in the cluster.

The stages run in this process against the session's real API server, registry, git
repository and store (as a flow run does): an invalid ``app.yaml`` fails the plan, a
template that does not render, a manifest the API server refuses at its dry run and an
image the registry does not have fail the bake, each naming the fault and its fix, and
the namespace holds nothing of theirs afterwards. Refs and names carrying shell
metacharacters or git options are refused by the CLI before any run is recorded, and
none of them runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from git import Actor, Repo
from prefect import flow

from shipyard.adapters.kube import Kube
from shipyard.domain.catalog import AppDescriptor, parse_descriptor
from shipyard.domain.images import ImageRef
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.settings import Settings
from shipyard.store import Ledger, Store
from stages.bake import bake_manifests
from stages.lifecycle import PipelineFailed, begin_run, running
from stages.releases import ReleasePlan, plan_release
from tests.support.services import SourceRepo
from tests.support.stack import PROJECT, Stack

pytestmark = pytest.mark.integration

APP = "discovery"
AUTHOR = Actor("Mallory", "mallory@example.com")


@flow(name="bad-input-bake")
async def bake_once(plan: ReleasePlan) -> str:
    run = await begin_run("cd", (StageSpec(f"bake:{APP}"),), run_id=None, trigger="test")
    async with running(run):
        await bake_manifests(run, plan, ["staging", "prod"], stage_ref=f"bake:{APP}")
    return run.run_id


@flow(name="bad-input-plan")
async def plan_once(ci_run_id: str) -> str:
    run = await begin_run("cd", (StageSpec("plan"),), run_id=None, trigger="test")
    async with running(run):
        await plan_release(run, APP, ci_run_id, "staging")
    return run.run_id


def commit(source: SourceRepo, branch: str, edit: Callable[[str], str], path: str) -> str:
    """A commit on ``branch`` (from the good one) with ``path`` edited by ``edit``."""
    repo = Repo(source.path)
    target = Path(source.path) / path
    original = target.read_text()
    repo.create_head(branch, source.good).checkout()
    try:
        changed = edit(original)
        assert changed != original, f"the edit for {branch} changed nothing"
        target.write_text(changed)
        repo.index.add([path])
        return repo.index.commit(f"bad input: {branch}", author=AUTHOR,
                                 committer=AUTHOR).hexsha
    finally:
        repo.heads["main"].checkout()


def pushed_image(store: Store) -> ImageRef:
    """An image of discovery the registry really serves (an earlier ci run pushed it)."""
    artifacts = Ledger(store).artifacts(app=APP, kind="image")
    assert artifacts, "no ci run of this session pushed discovery"
    return ImageRef.of_app(Settings().registry, APP, artifacts[0].digest)


@pytest.fixture
def in_session_environments(prefect_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Kube:
    """The in-process stages deploy (here: validate) into the session's environments."""
    monkeypatch.setenv("SHIPYARD_NAMESPACE_PREFIX",
                       prefect_stack.env["SHIPYARD_NAMESPACE_PREFIX"])
    return Kube.from_kubeconfig(Path(prefect_stack.env["SHIPYARD_KUBECONFIG"]))


def nothing_of(kube: Kube, stack: Stack, run_id: str) -> None:
    """No object of the bake's release exists in either environment."""
    prefix = stack.env["SHIPYARD_NAMESPACE_PREFIX"]
    release = f"shipyard.dev/release=r-{run_id[:8]}"
    for env in ("staging", "prod"):
        for kind, api in (("Deployment", "apps/v1"), ("ConfigMap", "v1"),
                          ("Service", "v1")):
            assert kube.list_objects(api, kind, prefix + env, release) == [], (env, kind)


def descriptor() -> AppDescriptor:
    return parse_descriptor(yaml.safe_load((PROJECT / f"apps/{APP}/app.yaml").read_text()),
                            source=APP)


TEMPLATE = f"apps/{APP}/deploy/deployment.yaml.j2"
BAD_BAKES = {
    # name: (path, edit, reason, what the message must say)
    "unrenderable": (TEMPLATE, lambda t: t.replace("{{ app.readiness_path }}",
                                                   "{{ app.readiness_path | nosuchfilter }}"),
                     "InvalidManifest", "nosuchfilter"),
    "unknown-value": (TEMPLATE, lambda t: t.replace("{{ app.readiness_path }}",
                                                    "{{ app.no_such_setting }}"),
                      "InvalidManifest", "no_such_setting"),
    "refused-by-the-api-server": (TEMPLATE, lambda t: t.replace(
        "containerPort: {{ app.port }}}", "containerPort: 70000}"),
        "InvalidManifest", "the API server refused it"),
}


@pytest.mark.parametrize("case", sorted(BAD_BAKES))
def test_a_bad_template_fails_the_bake_naming_it_and_applies_nothing(
        prefect_stack: Stack, source_repo: SourceRepo, in_session_environments: Kube,
        case: str) -> None:
    path, edit, reason, said = BAD_BAKES[case]
    sha = commit(source_repo, f"bad-{case}", edit, path)
    store = Store.open(prefect_stack.store_url)
    plan = ReleasePlan(app=APP, environment="staging", version=sha[:12], commit_sha=sha,
                       ci_run_id="", depends_on=[], repo_url=str(source_repo.path),
                       descriptor=descriptor(), image=pushed_image(store))
    with pytest.raises(PipelineFailed) as failed:
        asyncio.run(bake_once(plan))
    bake = store.get_run(failed.value.run.id).stage(f"bake:{APP}")
    assert (bake.state, bake.reason) == (State.FAILED, reason), bake.message
    assert said in bake.message
    nothing_of(in_session_environments, prefect_stack, failed.value.run.id)


def test_an_image_the_registry_does_not_have_fails_the_bake_before_anything_names_it(
        prefect_stack: Stack, source_repo: SourceRepo, in_session_environments: Kube
        ) -> None:
    store = Store.open(prefect_stack.store_url)
    missing = ImageRef.of_app(Settings().registry, APP, "sha256:" + "0" * 64)
    plan = ReleasePlan(app=APP, environment="staging", version=source_repo.good[:12],
                       commit_sha=source_repo.good, ci_run_id="", depends_on=[],
                       repo_url=str(source_repo.path), descriptor=descriptor(),
                       image=missing)
    with pytest.raises(PipelineFailed) as failed:
        asyncio.run(bake_once(plan))
    bake = store.get_run(failed.value.run.id).stage(f"bake:{APP}")
    assert (bake.state, bake.reason) == (State.FAILED, "ImageMissing"), bake.message
    assert f"the registry has no {missing.reference}" in bake.message
    assert "run ci again" in bake.message
    nothing_of(in_session_environments, prefect_stack, failed.value.run.id)


def test_an_invalid_app_yaml_fails_the_plan_naming_the_field(
        prefect_stack: Stack, source_repo: SourceRepo) -> None:
    sha = commit(source_repo, "bad-app-yaml",
                 lambda text: text.replace("port: 8761", "port: not-a-port", 1),
                 f"apps/{APP}/app.yaml")
    store = Store.open(prefect_stack.store_url)
    # A ci run of that commit that tested discovery: what `release` plans from.
    ci = store.create_run("ci", [StageSpec(f"test:{APP}")], trigger="test",
                          repo_url=str(source_repo.path), commit_sha=sha)
    store.transition_stage(ci.id, f"test:{APP}", State.RUNNING, reason="Started")
    store.transition_stage(ci.id, f"test:{APP}", State.SUCCEEDED, reason="Succeeded")
    store.transition_run(ci.id, State.SUCCEEDED, reason="Succeeded",
                         message="tested discovery")
    assert store.get_run(ci.id).state is State.SUCCEEDED
    with pytest.raises(PipelineFailed) as failed:
        asyncio.run(plan_once(ci.id))
    plan = store.get_run(failed.value.run.id).stage("plan")
    assert (plan.state, plan.reason) == (State.FAILED, "InvalidDescriptor"), plan.message
    assert f"apps/{APP}/app.yaml" in plan.message and "port" in plan.message


UNSAFE_REFS = ["$(touch /tmp/shipyard-pwned)", "--upload-pack=touch /tmp/shipyard-pwned",
               "main`touch /tmp/shipyard-pwned`", "main..x", "main@{1}"]
LITERAL_REF = "main;touch${IFS}/tmp/shipyard-pwned"  # a legal ref name git never runs


def test_refs_and_names_with_shell_metacharacters_never_run(
        prefect_stack: Stack, source_repo: SourceRepo) -> None:
    store = Store.open(prefect_stack.store_url)
    before = len(store.list_runs(limit=5000))
    marker = Path("/tmp/shipyard-pwned")
    marker.unlink(missing_ok=True)
    for ref in UNSAFE_REFS:  # refused by the CLI before anything is recorded
        done = prefect_stack.shipyard("ci", "--repo", str(source_repo.path), f"--ref={ref}",
                                      "--app", APP, "--no-wait")
        assert done.returncode == 1, ref
        assert f"git ref {ref!r} is not a valid branch, tag or commit" in done.stderr, ref
    for name in ("discovery;id", "disc$(id)", "../etc"):
        done = prefect_stack.shipyard("rollback", name, "--reason", "bad name")
        assert done.returncode == 1 and "app name" in done.stderr, (name, done.stderr)
    refused = prefect_stack.shipyard("ci", "--repo=--upload-pack=touch /tmp/x",
                                     "--app", APP, "--no-wait")
    assert refused.returncode == 1 and "must not start with '-'" in refused.stderr
    assert len(store.list_runs(limit=5000)) == before  # nothing was recorded
    # A name git allows is only ever a name: the checkout says there is no such ref.
    done = prefect_stack.shipyard("ci", "--repo", str(source_repo.path), "--ref",
                                  LITERAL_REF, "--app", APP, timeout=300)
    assert done.returncode == 1
    run = store.get_run(store.list_runs(limit=1, pipeline="ci")[0].id)
    checkout = run.stage("checkout")
    assert checkout.state is State.FAILED and LITERAL_REF in checkout.message, \
        checkout.message
    assert not marker.exists()  # and nothing ran
