"""The cd pipelines against the real cluster: a release of the four apps reaches production
in dependency order through staging and red/black; a build that never becomes ready never
receives traffic and the release rolls back; a warm rollback under load loses no request."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from git import Actor, Repo

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_client import KubeError
from shipyard.adapters.load import LoadSpec, start_load
from shipyard.cli.judgments import operating_system_user
from shipyard.domain.states import State
from shipyard.domain.traffic import summarize
from shipyard.settings import Settings
from shipyard.store import Ledger, ReleaseRecord, RunRecord, Store
from stages.rollouts import service_url, serving_slot
from tests.support.faults import restart_api_server
from ui.environments import read_board

pytestmark = pytest.mark.integration

AUTHOR = Actor("Ada Tester", "ada@example.com")


def store_of(stack) -> Store:
    return Store.open(stack.store_url)


def newest(stack, pipeline: str) -> RunRecord:
    store = store_of(stack)
    return store.get_run(store.list_runs(limit=1, pipeline=pipeline)[0].id)


def commit_on_branch(repo_path: Path, branch: str, base: str, edits: dict[str, str],
                     message: str) -> str:
    """A commit on ``branch`` (made from ``base``) with ``edits`` (path -> new text)."""
    repo = Repo(repo_path)
    repo.create_head(branch, base).checkout()
    for relative, text in edits.items():
        (repo_path / relative).write_text(text)
    repo.index.add(list(edits))
    sha = repo.index.commit(message, author=AUTHOR, committer=AUTHOR).hexsha
    repo.heads["main"].checkout()
    return sha


def current(ledger: Ledger, app: str, environment: str) -> ReleaseRecord:
    release = ledger.current_release(app, environment)
    assert release is not None, f"{app} has no release in {environment}"
    return release


def namespace(stack, environment: str) -> str:
    return stack.env["SHIPYARD_NAMESPACE_PREFIX"] + environment


@pytest.fixture(scope="module")
def kube(real_cluster: Path) -> Kube:
    return Kube.from_kubeconfig(real_cluster)


def version_served(kube: Kube, ns: str, app: str) -> str:
    """The version most answers of ``app``'s Service come from; "" when it has none (a
    first release that was rolled back leaves no Service)."""
    try:
        url = service_url(kube, ns, app)
    except KubeError as err:
        if err.status != 404 and "Not Found" not in str(err):
            raise
        return ""
    return asyncio.run(_probe_version(url))


async def _probe_version(url: str) -> str:
    samples = await start_load(LoadSpec(base_url=url, rate_per_second=20,
                                         duration_seconds=1)).wait()
    versions = summarize(samples).versions
    return max(versions, key=lambda v: versions[v]) if versions else ""


@pytest.fixture
def discovery_in_production(prefect_stack, source_repo, kube) -> Ledger:
    """Production runs some release of discovery (a canary needs it as the baseline),
    whichever version that is; released at the good commit only when none runs."""
    ledger = Ledger(store_of(prefect_stack))
    running = ledger.current_release("discovery", "prod")
    if running is not None and running.slot and \
            version_served(kube, namespace(prefect_stack, "prod"), "discovery"):
        return ledger
    done = prefect_stack.shipyard("release", "--repo", str(source_repo.path), "--ref",
                                  source_repo.good, "--app", "discovery", timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    return ledger


@pytest.fixture
def discovery_released(prefect_stack, source_repo, kube) -> Ledger:
    """Discovery at the good commit in staging and production, as the ledger records and
    the cluster serves it. A release of the four apps (or an earlier test) usually left it
    so; only when not is it released here. The tests below start from this, and a release
    of the same build again would repeat its canary and chaos windows for nothing."""
    ledger = Ledger(store_of(prefect_stack))
    version = source_repo.good[:12]
    if all((release := ledger.current_release("discovery", env)) is not None
           and release.version == version
           and version_served(kube, namespace(prefect_stack, env), "discovery") == version
           for env in ("staging", "prod")):
        return ledger
    done = prefect_stack.shipyard("release", "--repo", str(source_repo.path), "--ref",
                                  source_repo.good, "--app", "discovery", timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    return ledger


def test_a_release_of_the_four_apps_reaches_production_in_dependency_order(
        prefect_stack, source_repo, kube, real_cluster):
    """The fault on the way: the API server is restarted while staging's gateway rolls
    out. The rollout and every call after it wait for it to answer again."""
    started = prefect_stack.shipyard("release", "--repo", str(source_repo.path), "--ref",
                                     source_repo.good, "--no-wait")
    assert started.returncode == 0, started.stdout + started.stderr
    store = store_of(prefect_stack)
    run = newest(prefect_stack, "release")
    deadline = time.monotonic() + 2400
    wait_for_stage(store, run.id, "staging:gateway", State.RUNNING, deadline)
    down = restart_api_server(real_cluster.parent, real_cluster)
    run = wait_for_end(store, run.id, deadline)
    print(f"the API server answered nothing for {down:.1f}s during staging:gateway")
    assert run.state is State.SUCCEEDED, (run.reason, run.message)
    said = "".join(c.text for c in store.read_logs(run.id, "staging:gateway"))
    assert "the API server did not answer" in said or down < 1, said[-2000:]
    started = {s.ref: s.started_at for s in run.stages if s.started_at}
    finished = {s.ref: s.finished_at for s in run.stages if s.finished_at}
    for env in ("staging", "prod"):
        # discovery before gateway and data; nothing in an environment before its deps.
        assert finished[f"{env}:discovery"] <= started[f"{env}:gateway"]
        assert finished[f"{env}:discovery"] <= started[f"{env}:data"]
    ledger = Ledger(store_of(prefect_stack))
    version = source_repo.good[:12]
    for app in ("discovery", "gateway", "data", "streaming"):
        prod = ledger.current_release(app, "prod")
        assert prod is not None and prod.version == version and prod.slot, app
        assert serving_slot(kube, namespace(prefect_stack, "prod"), app) == prod.slot
        assert version_served(kube, namespace(prefect_stack, "prod"), app) == version
        deploy = run.stage(f"prod:{app}").outputs
        assert deploy["slot"] == prod.slot
    # The gateway in production routes to data through discovery.
    gateway = service_url(kube, namespace(prefect_stack, "prod"), "gateway")
    answer = asyncio.run(_get(f"{gateway}/api/data/healthz"))
    assert answer == 200
    # The environments board reads the same from the cluster: every app healthy in both
    # environments, production's traffic all on the released slot.
    settings = Settings(home=prefect_stack.home, kubeconfig=real_cluster,
                        namespace_prefix=prefect_stack.env["SHIPYARD_NAMESPACE_PREFIX"])
    board = read_board(store_of(prefect_stack), settings)
    assert board.cluster_error == ""
    for app in ("discovery", "gateway", "data", "streaming"):
        prod = ledger.current_release(app, "prod")
        assert prod is not None
        cell = board.cells[app, "prod"]
        assert (cell.health, cell.shares) == ("healthy", {f"{app}-{prod.slot}": 1.0}), app
        assert board.cells[app, "staging"].health == "healthy", app


async def _get(url: str) -> int:
    import httpx

    deadline = time.monotonic() + 30
    status = 0
    async with httpx.AsyncClient(timeout=3) as client:
        while time.monotonic() < deadline:
            try:
                status = (await client.get(url)).status_code
            except httpx.HTTPError:
                status = 0
            if status == 200:
                return status
            await asyncio.sleep(0.5)
    return status


def test_a_build_that_never_becomes_ready_never_receives_traffic(
        prefect_stack, source_repo, kube, discovery_released):
    ledger = discovery_released
    staging_before = current(ledger, "discovery", "staging")
    prod_before = current(ledger, "discovery", "prod")
    template = (source_repo.path / "apps/discovery/deploy/deployment.yaml.j2").read_text()
    never_ready = commit_on_branch(
        source_repo.path, "never-ready", source_repo.good,
        {"apps/discovery/deploy/deployment.yaml.j2":
            template.replace("path: {{ app.readiness_path }}", "path: /never-ready")},
        "Probe a readiness path that does not exist")

    done = prefect_stack.shipyard("release", "--repo", str(source_repo.path), "--ref",
                                  never_ready, "--app", "discovery", timeout=1200)
    assert done.returncode == 1
    run = newest(prefect_stack, "release")
    assert run.state is State.FAILED
    staging = run.stage("staging:discovery")
    assert staging.state is State.FAILED and staging.reason == "RolloutFailed"
    assert "ReadinessProbeFailed" in staging.message or "available" in staging.message
    assert run.stage("prod:discovery").state is State.SKIPPED
    assert run.stage("rollback").state is State.SUCCEEDED
    # Staging still serves the version from before; production was never touched.
    ns = namespace(prefect_stack, "staging")
    assert version_served(kube, ns, "discovery") == staging_before.version
    assert ledger.current_release("discovery", "staging") == staging_before
    assert ledger.current_release("discovery", "prod") == prod_before
    logs = store_of(prefect_stack).read_logs(run.id, "staging:discovery")
    assert any("/never-ready" in chunk.text or "Readiness" in chunk.text for chunk in logs)


def test_a_build_with_injected_errors_fails_its_canary_and_nothing_keeps_serving_it(
        prefect_stack, source_repo, kube, discovery_released):
    ledger = discovery_released
    prod_before = current(ledger, "discovery", "prod")
    staging_before = current(ledger, "discovery", "staging")
    config = (source_repo.path / "apps/discovery/deploy/configmap.yaml.j2").read_text()
    faulty = config.replace('config.get("FAULTS", "{}")',
                            """config.get("FAULTS", '{"FAULT_ERROR_RATE": "0.4", """
                            """"FAULT_LATENCY_MS": "300"}')""")
    assert faulty != config
    bad = commit_on_branch(source_repo.path, "injected-errors", source_repo.good,
                           {"apps/discovery/deploy/configmap.yaml.j2": faulty},
                           "Answer 40% of requests with 500, every one 300 ms late")

    done = prefect_stack.shipyard("release", "--repo", str(source_repo.path), "--ref", bad,
                                  "--app", "discovery", timeout=1200)
    assert done.returncode == 1
    run = newest(prefect_stack, "release")
    canary = run.stage("canary:discovery")
    assert canary.state is State.FAILED and canary.reason == "CanaryFailed"
    error_rate = canary.outputs["report"]["metrics"]["error-rate"]
    assert error_rate["classification"] == "High" and error_rate["critical_failure"]
    assert canary.outputs["score"] == 0  # a critical metric failed
    # Through Prometheus as through the pods' scrape: the same verdict, the same metrics
    # failing, on the same window.
    report = canary.outputs["report"]
    assert report["provider"] == "prometheus"
    assert report["metrics"]["latency-p95"]["classification"] == "High"
    (pods,) = report["cross_checks"]
    assert pods["provider"] == "pods" and pods["verdict"] == canary.outputs["verdict"]
    assert pods["metrics"]["error-rate"] == "High" and pods["metrics"]["latency-p95"] == "High"
    assert run.stage("prod:discovery").state is State.SKIPPED
    assert run.stage("staging:discovery").state is State.ROLLED_BACK
    assert run.stage("rollback").state is State.SUCCEEDED
    # Nothing serves the bad build: staging is back, production never had it, and the
    # canary and baseline pods are gone.
    assert version_served(kube, namespace(prefect_stack, "staging"), "discovery") == \
        staging_before.version
    assert ledger.current_release("discovery", "prod") == prod_before
    prod = namespace(prefect_stack, "prod")
    assert kube.pods(prod, "app.kubernetes.io/name=discovery,shipyard.dev/track=canary") \
        == [] or all(p["metadata"].get("deletionTimestamp") for p in kube.pods(
            prod, "app.kubernetes.io/name=discovery,shipyard.dev/track=canary"))
    staging_release = current(ledger, "discovery", "staging")
    assert staging_release.kind == "rollback" and staging_release.version == \
        staging_before.version


def test_a_warm_rollback_under_steady_load_loses_no_request(prefect_stack, source_repo,
                                                            kube, discovery_released):
    ledger = discovery_released
    old = current(ledger, "discovery", "prod")
    readme = (source_repo.path / "apps/discovery/README.md").read_text()
    second = commit_on_branch(source_repo.path, "second", source_repo.good,
                              {"apps/discovery/README.md": readme + "\nA second version.\n"},
                              "A second version of discovery")
    started = prefect_stack.shipyard("release", "--repo", str(source_repo.path), "--ref",
                                     second, "--app", "discovery", "--warm-seconds", "60",
                                     "--no-wait")
    assert started.returncode == 0, started.stderr
    run = newest(prefect_stack, "release")
    deadline = time.monotonic() + 900
    while not any(s.ref == "prod:discovery" and s.state is State.SUCCEEDED
                  for s in store_of(prefect_stack).get_run(run.id).stages):
        assert time.monotonic() < deadline, "prod:discovery did not succeed in time"
        assert not store_of(prefect_stack).get_run(run.id).state.is_terminal
        time.sleep(1)
    ns = namespace(prefect_stack, "prod")
    assert version_served(kube, ns, "discovery") == second[:12]

    samples = asyncio.run(_rollback_under_load(prefect_stack, service_url(kube, ns,
                                                                          "discovery")))
    summary = summarize(samples)
    assert summary.requests > 50
    assert summary.failures == 0, summary
    back = current(ledger, "discovery", "prod")
    assert back.kind == "rollback" and back.version == old.version and back.slot == old.slot
    rollback_run = newest(prefect_stack, "rollback")
    assert rollback_run.stage("rollback").outputs["mode"] == "warm"
    assert version_served(kube, ns, "discovery") == old.version
    # The source of truth follows: a branch puts discovery back as it was.
    branch = rollback_run.stage("rollback").outputs["revert_branch"]
    assert branch == f"shipyard/revert-discovery-{second[:12]}"
    reverted = Repo(source_repo.path).commit(branch)
    assert reverted.parents[0].hexsha == second
    assert (reverted.tree / "apps/discovery/README.md").data_stream.read().decode() == readme


async def _rollback_under_load(stack, url: str) -> list:
    load = start_load(LoadSpec(base_url=url, rate_per_second=40, duration_seconds=60,
                               keep_alive=False))
    await asyncio.sleep(2)
    rolled = await asyncio.to_thread(stack.shipyard, "rollback", "discovery", "--reason",
                                     "the second version is bad", "--revert")
    assert rolled.returncode == 0, rolled.stdout[-3000:] + rolled.stderr
    await asyncio.sleep(2)
    return await load.stop()


def wait_for_stage(store: Store, run_id: str, ref: str, state: State,
                   deadline: float) -> RunRecord:
    """The run once its stage ``ref`` is in ``state``; fails if the run ends first."""
    while True:
        run = store.get_run(run_id)
        if any(s.ref == ref and s.state is state for s in run.stages):
            return run
        assert time.monotonic() < deadline, f"{ref} never became {state.value}"
        assert not run.state.is_terminal, f"{run.state.value}: {run.reason}: {run.message}"
        time.sleep(1)


def wait_for_end(store: Store, run_id: str, deadline: float) -> RunRecord:
    while not (run := store.get_run(run_id)).state.is_terminal:
        assert time.monotonic() < deadline, f"run {run_id[:8]} did not end in time"
        time.sleep(1)
    return run


def test_a_rejected_release_restarted_from_its_canary_judges_again_and_goes_on_when_approved(
        prefect_stack, source_repo, kube, discovery_in_production):
    """One release serves the judgment and the restart: it is rejected (and rolled back),
    restarted from its canary, which re-deploys staging, judges the canary and chaos
    again and asks for a new judgment, never trusting the old verdicts. The judgment holds
    production until it is approved; then the run goes on where it was."""
    store = store_of(prefect_stack)
    staging_before = version_served(kube, namespace(prefect_stack, "staging"), "discovery")
    readme = (source_repo.path / "apps/discovery/README.md").read_text()
    judged = commit_on_branch(source_repo.path, "judged", source_repo.good,
                              {"apps/discovery/README.md": readme + "\nA judged version.\n"},
                              "A version of discovery a person judges")
    started = prefect_stack.shipyard("release", "--repo", str(source_repo.path), "--ref",
                                     judged, "--app", "discovery", "--judgment", "--no-wait")
    assert started.returncode == 0, started.stderr
    first = newest(prefect_stack, "release")
    deadline = time.monotonic() + 900
    wait_for_stage(store, first.id, "judgment", State.WAITING, deadline)
    rejected = prefect_stack.shipyard("reject", first.short_id, "--reason", "not today")
    assert rejected.returncode == 0, rejected.stdout + rejected.stderr
    first = wait_for_end(store, first.id, deadline)
    assert first.state is State.FAILED
    assert first.stage("judgment").reason == "Rejected"
    assert first.stage("staging:discovery").state is State.ROLLED_BACK
    assert first.stage("prod:discovery").state is State.SKIPPED
    assert version_served(kube, namespace(prefect_stack, "staging"), "discovery") == \
        staging_before

    refused = prefect_stack.shipyard("restart", first.short_id, "--from", "canary")
    assert refused.returncode == 1
    assert "has no stage 'canary'; its stages are: ci, plan:discovery, locks" in \
        refused.stderr
    restarted = prefect_stack.shipyard("restart", first.short_id, "--from",
                                       "canary:discovery", "--no-wait")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    again = newest(prefect_stack, "release")
    assert again.id != first.id and again.restarted_from == first.id
    waiting = wait_for_stage(store, again.id, "judgment", State.WAITING, deadline)
    reasons = {s.ref: (s.state, s.reason) for s in waiting.stages}
    # What stood is reused; what the rejection undid, and every verdict, runs again.
    for ref in ("ci", "plan:discovery", "bake:discovery"):
        assert reasons[ref] == (State.SUCCEEDED, "Reused"), ref
    assert waiting.stage("bake:discovery").outputs == first.stage("bake:discovery").outputs
    for ref in ("locks", "staging:discovery", "canary:discovery", "chaos:discovery"):
        assert reasons[ref][0] is State.SUCCEEDED and reasons[ref][1] != "Reused", ref
    # Judged from Prometheus (the stack runs one), each metric linked to its graph,
    # and cross-checked through the pods' scrape over the same window.
    report = waiting.stage("canary:discovery").outputs["report"]
    assert report["provider"] == "prometheus", report.get("notes")
    assert set(report["links"]) == set(report["metrics"])
    link = report["links"]["error-rate"]["canary"]
    assert "g0.expr=" in link and httpx.get(link, timeout=10).status_code == 200
    assert [c["provider"] for c in report["cross_checks"]] == ["pods"]
    judged_again, first_ended = waiting.stage("canary:discovery").started_at, first.finished_at
    assert judged_again is not None and first_ended is not None and judged_again > first_ended
    assert version_served(kube, namespace(prefect_stack, "staging"), "discovery") == \
        judged[:12]

    assert reasons["prod:discovery"][0] is State.QUEUED  # the judgment holds production
    staging_ran = waiting.stage("staging:discovery").finished_at

    answered_at = time.time()
    approved = prefect_stack.shipyard("approve", again.short_id, "--comment", "now yes")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    done = wait_for_end(store, again.id, deadline)
    assert done.state is State.SUCCEEDED, done.message
    # The body ran again after the suspension, but the stages before the judgment did not.
    assert done.stage("staging:discovery").finished_at == staging_ran
    prod_started = done.stage("prod:discovery").started_at
    assert prod_started is not None
    print(f"answer → prod:discovery started: {prod_started.timestamp() - answered_at:.1f}s")
    assert done.stage("judgment").message.endswith(
        f"approved by {operating_system_user()}: now yes")
    assert done.stage("prod:discovery").state is State.SUCCEEDED
    assert current(Ledger(store), "discovery", "prod").version == judged[:12]
    assert version_served(kube, namespace(prefect_stack, "prod"), "discovery") == judged[:12]
