"""The ci pipeline on a real repository (a bare "remote" that commits are pushed to), the real
Docker engine and registry and the real Prefect server: only the apps a commit changes are
tested, built and pushed; the others keep their image; ``when`` skips the push off the
release branches."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from git import Actor, Repo

from pipelines.ci import ci_flow
from shipyard.domain.states import State
from shipyard.store import Ledger, RunRecord, Store
from tests.support.stack import PROJECT, SHIPYARD

pytestmark = pytest.mark.integration

APPS = ("discovery", "streaming")
AUTHOR = Actor("Grace Pusher", "grace@example.com")


class Remote:
    """A bare repository and a working clone that commits and pushes to it."""

    def __init__(self, root: Path) -> None:
        self.bare = Repo.init(root / "remote.git", bare=True, initial_branch="main")
        self.work = Repo.init(root / "work", initial_branch="main")
        shutil.copytree(PROJECT / "apps", root / "work" / "apps", ignore=shutil.ignore_patterns(
            "__pycache__", ".*_cache", "*.egg-info", "streaming-data", "*.db"))
        # Sources no other test has built: every app's key is new to the shared store.
        (root / "work" / "apps" / "servicekit" / "BUILD-NONCE").write_text(uuid.uuid4().hex)
        self.work.create_remote("origin", str(root / "remote.git"))
        self.commit("Add the apps")

    @property
    def url(self) -> str:
        return str(Path(self.bare.git_dir))

    def commit(self, message: str, **files: str) -> str:
        for path, text in files.items():
            target = Path(self.work.working_dir) / path
            target.write_text(text)
        self.work.git.add("-A")
        sha = self.work.index.commit(message, author=AUTHOR, committer=AUTHOR).hexsha
        self.work.git.push("origin", "main")
        return str(sha)


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Remote:
    return Remote(tmp_path_factory.mktemp("ci-remote"))


def ci(stack, remote: Remote, *extra: str) -> RunRecord:
    apps = [arg for app in APPS for arg in ("--app", app)]
    done = stack.shipyard("ci", "--repo", remote.url, "--ref", "main", *apps, *extra)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    store = Store.open(stack.store_url)
    return store.get_run(store.list_runs(limit=1, pipeline="ci")[0].id)


def shipyard_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as the delivery stack's own (its registry, its engine)."""
    return subprocess.run([*SHIPYARD, *args], env=env, cwd=PROJECT, capture_output=True,
                          text=True, timeout=300, check=False)


def stage_refs(run: RunRecord) -> list[str]:
    return [s.ref for s in run.stages]


def test_a_new_commit_builds_and_pushes_every_app_the_registry_serves(prefect_stack, remote):
    run = ci(prefect_stack, remote)
    assert run.state is State.SUCCEEDED
    for app in APPS:
        assert {f"test:{app}", f"build:{app}", f"push:{app}"} <= set(stage_refs(run))
    artifacts = {a.app: a for a in Ledger(Store.open(prefect_stack.store_url))
                 .artifacts(run_id=run.id)}
    assert set(artifacts) == set(APPS)
    for app, artifact in artifacts.items():
        served = httpx.head(f"http://127.0.0.1:5000/v2/shipyard/{app}/manifests/{artifact.tag}",
                            headers={"Accept": "application/vnd.docker.distribution.manifest"
                                     ".v2+json"}, timeout=10)
        assert served.headers["Docker-Content-Digest"] == artifact.digest
        assert artifact.commit_sha == run.commit_sha


def test_the_same_commit_again_rebuilds_nothing(prefect_stack, remote):
    first = ci(prefect_stack, remote)
    again = ci(prefect_stack, remote)
    assert stage_refs(again) == ["checkout", "changes"]
    reused = again.stage("changes").outputs["reused"]
    assert set(reused) == set(APPS)
    store = Store.open(prefect_stack.store_url)
    built = {a.app: a.digest for a in Ledger(store).artifacts(limit=20)
             if a.commit_sha == first.commit_sha}
    assert {app: image["digest"] for app, image in reused.items()} == \
        {app: built[app] for app in APPS}
    assert {image["repository"] for image in reused.values()} == \
        {f"shipyard/{app}" for app in APPS}


def test_a_change_to_one_app_rebuilds_only_that_app(prefect_stack, remote, delivery_stack):
    """The fault on the way: the registry stops as the image is about to be pushed. The
    push fails naming the registry; with the registry back, the run restarted from its
    push pushes the image it built, and builds nothing again."""
    ci(prefect_stack, remote)
    remote.commit("Document discovery", **{"apps/discovery/NOTES.md": "leases\n"})
    apps = [arg for app in APPS for arg in ("--app", app)]
    started = prefect_stack.shipyard("ci", "--repo", remote.url, "--ref", "main", *apps,
                                     "--no-wait")
    assert started.returncode == 0, started.stderr
    store = Store.open(prefect_stack.store_url)
    broken = store.get_run(store.list_runs(limit=1, pipeline="ci")[0].id)
    deadline = time.monotonic() + 600
    while not any(s.ref == "push:discovery" or (s.ref == "build:discovery" and
                                                s.state is State.SUCCEEDED)
                  for s in store.get_run(broken.id).stages):
        assert time.monotonic() < deadline and not store.get_run(broken.id).state.is_terminal
        time.sleep(0.05)
    stopped = shipyard_with(delivery_stack, "down", "--only", "registry")
    try:
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        while not (broken := store.get_run(broken.id)).state.is_terminal:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        back = shipyard_with(delivery_stack, "up", "--only", "registry")
    assert back.returncode == 0, back.stdout + back.stderr
    push = broken.stage("push:discovery")
    assert (broken.state, push.state) == (State.FAILED, State.FAILED), push.message
    assert "127.0.0.1:5000" in push.message, push.message
    resumed = prefect_stack.shipyard("restart", broken.short_id, "--from", "push:discovery")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr
    run = store.get_run(store.list_runs(limit=1, pipeline="ci")[0].id)
    assert run.restarted_from == broken.id and run.state is State.SUCCEEDED
    assert run.stage("build:discovery").reason == "Reused"
    assert "build:discovery" in stage_refs(run) and "build:streaming" not in stage_refs(run)
    changes = run.stage("changes").outputs
    assert changes["changed"] == ["discovery"] and list(changes["reused"]) == ["streaming"]
    assert "apps/discovery/NOTES.md" in changes["reasons"]["discovery"]


def test_a_change_to_the_shared_kit_rebuilds_every_app_that_uses_it(prefect_stack, remote):
    ci(prefect_stack, remote)
    remote.commit("Tune the kit", **{"apps/servicekit/NOTES.md": "shared\n"})
    run = ci(prefect_stack, remote)
    assert sorted(run.stage("changes").outputs["changed"]) == sorted(APPS)


def test_off_the_release_branches_the_push_is_skipped_when_not_met(
        prefect_stack, remote, monkeypatch):
    monkeypatch.setenv("SHIPYARD_PUSH_BRANCHES", '["main"]')
    sha = remote.commit("Try something", **{"apps/discovery/TRY.md": "maybe\n"})
    result = asyncio.run(ci_flow(repo=remote.url, ref=sha, apps=["discovery"],
                                 branch="refs/heads/feature/try", trigger="test"))
    run = Store.open(prefect_stack.store_url).get_run(result.run_id)
    assert run.state is State.SUCCEEDED
    push = run.stage("push:discovery")
    assert (push.state, push.reason) == (State.SKIPPED, "WhenNotMet")
    assert run.stage("build:discovery").state is State.SUCCEEDED
    assert "discovery" not in result.images


def test_restart_from_a_stage_reuses_what_came_before_and_runs_the_rest(prefect_stack,
                                                                          remote):
    remote.commit("Touch discovery", **{"apps/discovery/RESTART.md": "again\n"})
    done = prefect_stack.shipyard("ci", "--repo", remote.url, "--ref", "main", "--app",
                                  "discovery")
    assert done.returncode == 0, done.stderr
    store = Store.open(prefect_stack.store_url)
    original = store.get_run(store.list_runs(limit=1, pipeline="ci")[0].id)
    assert "build:discovery" in stage_refs(original)

    refused = prefect_stack.shipyard("restart", original.short_id, "--from", "deploy")
    assert refused.returncode == 1
    assert "has no stage 'deploy'; its stages are: checkout, changes" in refused.stderr

    restarted = prefect_stack.shipyard("restart", original.short_id, "--from",
                                       "build:discovery")
    assert restarted.returncode == 0, restarted.stdout[-2000:] + restarted.stderr
    again = store.get_run(store.list_runs(limit=1, pipeline="ci")[0].id)
    assert again.id != original.id and again.restarted_from == original.id
    assert again.commit_sha == original.commit_sha and again.trigger == "restart"
    reasons = {s.ref: (s.state, s.reason) for s in again.stages}
    assert reasons["changes"] == (State.SUCCEEDED, "Reused")
    assert reasons["test:discovery"] == (State.SUCCEEDED, "Reused")
    assert again.stage("test:discovery").outputs == original.stage("test:discovery").outputs
    assert reasons["build:discovery"][0] is State.SUCCEEDED
    assert reasons["build:discovery"][1] != "Reused" and reasons["push:discovery"][1] != "Reused"
    rebuilt = again.stage("push:discovery").outputs["image"]["digest"]
    assert rebuilt.startswith("sha256:")
