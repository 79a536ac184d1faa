"""The pipelines run through a real Prefect server and worker, started and followed with
the real ``shipyard`` CLI, and recorded in the store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from shipyard.adapters.kube import Kube
from shipyard.domain.states import State
from shipyard.store import Ledger, RunRecord, Store
from stages.rollouts import serving_slot
from tests.support.prefect_runs import settled_prefect_state

pytestmark = pytest.mark.integration


def open_store(stack) -> Store:
    return Store.open(stack.store_url)


def newest_run(stack, pipeline: str) -> RunRecord:
    store = open_store(stack)
    latest = store.list_runs(limit=1, pipeline=pipeline)[0]
    return store.get_run(latest.id)


def test_ci_checks_out_tests_builds_and_pushes_one_app_through_prefect(prefect_stack,
                                                                     source_repo):
    done = prefect_stack.shipyard("ci", "--repo", str(source_repo.path), "--ref", "main",
                                  "--app", "discovery", "--all")
    assert done.returncode == 0, done.stderr
    run = newest_run(prefect_stack, "ci")
    assert run.state is State.SUCCEEDED
    assert run.trigger == "cli"
    assert run.commit_sha == source_repo.good
    assert [(s.ref, s.state) for s in run.stages] == [
        ("checkout", State.SUCCEEDED), ("changes", State.SUCCEEDED),
        ("test:discovery", State.SUCCEEDED), ("build:discovery", State.SUCCEEDED),
        ("push:discovery", State.SUCCEEDED)]
    [artifact] = Ledger(open_store(prefect_stack)).artifacts(run_id=run.id)
    assert artifact.app == "discovery" and artifact.commit_sha == source_repo.good
    assert artifact.digest == run.stage("push:discovery").outputs["image"]["digest"]
    tests = run.stage("test:discovery")
    assert tests.outputs["passed"] > 0 and tests.outputs["failed"] == 0
    assert tests.duration_seconds is not None and tests.duration_seconds > 0
    assert run.stage("checkout").outputs["author"] == "Ada Tester"
    assert settled_prefect_state(str(run.prefect_flow_run_id)) == "COMPLETED"


def test_runs_and_show_list_a_flow_run_with_its_stages(prefect_stack, source_repo):
    prefect_stack.shipyard("ci", "--repo", str(source_repo.path), "--app", "discovery")
    run = newest_run(prefect_stack, "ci")

    listed = prefect_stack.shipyard("runs")
    assert listed.returncode == 0
    assert run.short_id in listed.stdout and "succeeded" in listed.stdout

    shown = prefect_stack.shipyard("show", run.short_id)
    assert shown.returncode == 0
    for text in ("checkout", "changes", "✔ succeeded", run.prefect_flow_run_id,
                 source_repo.good[:12]):
        assert text in shown.stdout
    logs = prefect_stack.shipyard("logs", run.short_id, "changes")
    assert "discovery: " in logs.stdout


def test_a_failing_test_fails_the_run_and_says_which(prefect_stack, source_repo):
    done = prefect_stack.shipyard("ci", "--repo", str(source_repo.path), "--ref", "broken",
                                  "--app", "discovery")
    assert done.returncode == 1
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ci run ")
    assert "TestsFailed" in errors[0]
    run = newest_run(prefect_stack, "ci")
    assert run.state is State.FAILED and run.reason == "StageFailed"
    stage = run.stage("test:discovery")
    assert stage.state is State.FAILED and stage.reason == "TestsFailed"
    assert "1 failed" in stage.message
    assert any("test_this_commit_is_broken" in f for f in stage.outputs.get("failures", [])) \
        or "test_this_commit_is_broken" in "".join(
            c.text for c in open_store(prefect_stack).read_logs(run.id, "test:discovery"))
    assert settled_prefect_state(str(run.prefect_flow_run_id)) == "FAILED"


def test_an_unknown_ref_fails_checkout_and_nothing_after_it_runs(prefect_stack, source_repo):
    done = prefect_stack.shipyard("ci", "--repo", str(source_repo.path), "--ref",
                                  "no-such-branch")
    assert done.returncode == 1
    run = newest_run(prefect_stack, "ci")
    checkout = run.stage("checkout")
    assert checkout.state is State.FAILED and checkout.reason == "CheckoutFailed"
    assert "no-such-branch" in checkout.message
    assert checkout.attempts == 2  # the checkout stage retries once
    assert run.state is State.FAILED


def test_release_promote_and_rollback_move_versions_between_environments(
        prefect_stack, source_repo, real_cluster):
    store = open_store(prefect_stack)
    ledger = Ledger(store)

    released = prefect_stack.shipyard("release", "--repo", str(source_repo.path), "--ref",
                                      source_repo.good, "--app", "discovery")
    assert released.returncode == 0, released.stderr
    release_run = newest_run(prefect_stack, "release")
    # The gates: chaos (discovery opts in), and a canary when production already runs
    # discovery (an earlier test's release).
    gates = {"canary:discovery", "chaos:discovery"}
    assert "chaos:discovery" in {s.ref for s in release_run.stages}
    assert [s.ref for s in release_run.stages if s.ref not in gates] == [
        "ci", "plan:discovery", "locks", "bake:discovery", "staging:discovery",
        "prod:discovery", "scale-down:discovery", "rollback"]
    assert release_run.stage("rollback").reason == "WhenNotMet"
    assert all(s.state is State.SUCCEEDED for s in release_run.stages[:-1])
    staging = ledger.current_release("discovery", "staging")
    assert staging is not None and staging.version == source_repo.good[:12]
    first = ledger.current_release("discovery", "prod")
    assert first is not None and first.run_id == release_run.id and first.slot

    promoted = prefect_stack.shipyard("promote", "discovery", "--from", "staging", "--to",
                                      "prod", "--why", "ship it")
    assert promoted.returncode == 0, promoted.stderr
    prod = ledger.current_release("discovery", "prod")
    assert prod is not None and prod.kind == "promote" and prod.why == "ship it"
    assert prod.version == staging.version and prod.source_release_id is None
    assert prod.slot > first.slot  # a new versioned Deployment beside the first

    rolled = prefect_stack.shipyard("rollback", "discovery", "--to", str(first.id),
                                    "--reason", "back to the first slot")
    assert rolled.returncode == 0, rolled.stderr
    back = ledger.current_release("discovery", "prod")
    assert back is not None and back.kind == "rollback" and back.slot == first.slot
    assert back.source_release_id == first.id and back.why == "back to the first slot"
    # With no warm window the first slot was scaled down: it was re-applied.
    assert newest_run(prefect_stack, "rollback").stage("rollback").outputs["mode"] == \
        "reapplied"
    history = prefect_stack.shipyard("history", "discovery")
    assert history.returncode == 0, history.stderr
    assert "rollback" in history.stdout and "promote" in history.stdout

    # A promote restarted from its deploy takes the same version into a new slot again,
    # reusing its plan and bake; a rollback restarted rolls back to the same release.
    # Fired at the same moment, the two take turns on the deploy lock, and what production
    # runs afterwards is what the one that went second made it.
    promote_run = newest_run(prefect_stack, "promote")
    rollback_run = newest_run(prefect_stack, "rollback")
    with ThreadPoolExecutor(2) as both:
        again = list(both.map(lambda argv: prefect_stack.shipyard(*argv), [
            ("restart", promote_run.short_id, "--from", "prod:discovery"),
            ("restart", rollback_run.short_id, "--from", "rollback")]))
    for done in again:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    repromoted = newest_run(prefect_stack, "promote")
    rerolled = newest_run(prefect_stack, "rollback")
    assert repromoted.restarted_from == promote_run.id
    assert rerolled.restarted_from == rollback_run.id and rerolled.state is State.SUCCEEDED
    assert repromoted.stage("plan").reason == "Reused"
    assert repromoted.stage("bake:discovery").reason == "Reused"
    assert repromoted.stage("prod:discovery").reason != "Reused"
    switched: dict[str, tuple[datetime, datetime]] = {}
    for kind, stage in (("promote", repromoted.stage("prod:discovery")),
                        ("rollback", rerolled.stage("rollback"))):
        assert stage.started_at is not None and stage.finished_at is not None
        switched[kind] = (stage.started_at, stage.finished_at)
    # The promote's deploy stage begins with its locks taken (its `locks` stage); the
    # rollback takes its lock inside its stage, so a rollback that waited began its switch
    # when its log says it took the lock, not when the stage began.
    took = [chunk.at for chunk in store.read_logs(rerolled.id, "rollback")
            if "took the deploy locks" in chunk.text]
    if took:
        switched["rollback"] = (took[0], switched["rollback"][1])
    first_done, second_done = sorted(switched, key=lambda k: switched[k][0])
    # Serialised: the second began its switch only after the first had ended its own.
    assert switched[first_done][1] <= switched[second_done][0]
    prod = ledger.current_release("discovery", "prod")
    assert prod is not None and prod.kind == second_done
    if second_done == "promote":
        assert prod.run_id == repromoted.id and prod.version == staging.version
        assert prod.slot > first.slot
    else:
        assert prod.run_id == rerolled.id and prod.source_release_id == first.id
        assert prod.slot == first.slot
    kube = Kube.from_kubeconfig(real_cluster)
    namespace = prefect_stack.env["SHIPYARD_NAMESPACE_PREFIX"] + "prod"
    assert serving_slot(kube, namespace, "discovery") == prod.slot
    gap = switched[second_done][0] - switched[first_done][0]
    print(f"promote and rollback fired together: the {first_done} went first, the "
          f"{second_done} switched {gap.total_seconds():.1f}s after it")


def test_cd_refuses_a_failed_ci_run(prefect_stack, source_repo):
    prefect_stack.shipyard("ci", "--repo", str(source_repo.path), "--ref", "broken",
                           "--app", "discovery")
    failed_ci = newest_run(prefect_stack, "ci")
    assert failed_ci.state is State.FAILED
    done = prefect_stack.shipyard("deploy", "discovery", "--ci-run", failed_ci.short_id)
    assert done.returncode == 1
    cd_run = newest_run(prefect_stack, "cd")
    assert cd_run.stage("plan").reason == "BuildNotReleasable"
    # Nothing was baked or deployed: the delivery stages join only after a plan.
    assert [s.ref for s in cd_run.stages] == ["plan"]


def test_bad_input_is_refused_before_anything_is_recorded(prefect_stack):
    store = open_store(prefect_stack)
    before = len(store.list_runs(limit=1000))
    bad_app = prefect_stack.shipyard("ci", "--repo", ".", "--app", "Not_An_App")
    assert bad_app.returncode == 1
    assert "app name 'Not_An_App'" in bad_app.stderr
    unknown = prefect_stack.shipyard("show", "0000dead")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "error: no run matches '0000dead'; `shipyard runs` lists recent runs")
    usage = prefect_stack.shipyard("runs", "--limit", "many")
    assert usage.returncode == 2 and usage.stderr.startswith("error: Invalid value")
    assert len(store.list_runs(limit=1000)) == before


def test_the_readme_demo_releases_and_promotes_an_app_of_this_checkout(prefect_stack):
    done = prefect_stack.shipyard("demo", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "already up" in done.stdout  # `shipyard up` is idempotent: the stack is reused
    release = newest_run(prefect_stack, "release")
    promote = newest_run(prefect_stack, "promote")
    assert release.trigger == promote.trigger == "demo"
    assert release.state is promote.state is State.SUCCEEDED
    prod = Ledger(open_store(prefect_stack)).current_release("discovery", "prod")
    assert prod is not None and prod.run_id == promote.id


def test_logs_follow_streams_a_stage_until_the_run_ends(prefect_stack, source_repo):
    started = prefect_stack.shipyard("ci", "--repo", str(source_repo.path), "--app",
                                     "discovery", "--all", "--no-wait")
    assert started.returncode == 0, started.stderr
    run = newest_run(prefect_stack, "ci")
    assert not run.state.is_terminal, "followed from before the end"
    # test:discovery does not exist yet: the pipeline adds it after change detection.
    followed = prefect_stack.shipyard("logs", run.short_id, "test:discovery", "--follow",
                                      timeout=900)
    assert followed.returncode == 0, followed.stderr
    assert "passed" in followed.stdout
    assert followed.stdout.rstrip().endswith(f"run {run.short_id} succeeded")
    assert newest_run(prefect_stack, "ci").state is State.SUCCEEDED
