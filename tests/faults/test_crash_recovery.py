"""Crash recovery: one red/black delivery of discovery, killed at each of its stage
boundaries in turn and resumed each time, while production serves a steady load.

The delivery is one release, restarted from the stage where it died (``shipyard restart
--from``), so the six faults cost about one release: after its bake, mid-staging and
mid-canary the flow's process is SIGKILLed (Prefect's worker sees it die and says the flow
run crashed); just before the production switch, just after it and mid-scale-down the
worker and the flow die together, as on a machine that lost power, so nobody tells Prefect
and only the stopped heartbeat says so. After each fault ``shipyard ui``'s sweeper, on its
own, settles the run as ``Abandoned`` and gives its deploy locks back; after the switch
the drift reconciler records the release the cluster serves from the intent the stage
wrote before it switched. Then the store equals the cluster: the ledger names the slot
the production Service selects. Production answers every request throughout.

Figures printed: per fault, seconds from the kill to the run settled and to the resumed
delivery having passed the stage it died in; the requests production failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from git import Actor, Repo

from shipyard.adapters.background import BackgroundProcess
from shipyard.adapters.kube import Kube
from shipyard.adapters.load import LoadSpec, start_load
from shipyard.domain.states import State
from shipyard.domain.traffic import Sample
from shipyard.store import DeployLocks, Ledger, RunRecord, Store
from stages.rollouts import service_url, serving_slot
from tests.support.judgment_flow import flow_processes
from tests.support.services import SourceRepo
from tests.support.stack import Stack
from tests.support.webhooks import serve_ui

pytestmark = pytest.mark.integration

APP = "discovery"
AUTHOR = Actor("Ada Tester", "ada@example.com")
# The stack's flows beat every 2 s (tests/support/stack.py); the unit tests run beside
# the delivery and may hold a core, so a flow is given several beats' slack.
ABANDON_AFTER_SECONDS = 15
SECONDS_PER_FAULT = 300


@dataclass
class Fault:
    """Where a delivery dies, how, and the stage its resumption starts from."""

    name: str
    restart_from: str
    whole_worker: bool  # the worker dies too: Prefect is never told
    settled_after: float = 0.0
    recovered_after: float = 0.0
    run: RunRecord | None = None


@dataclass
class Delivery:
    stack: Stack
    store: Store
    kube: Kube
    namespaces: dict[str, str]
    version: str
    faults: list[Fault] = field(default_factory=list)
    final: RunRecord | None = None
    samples: list[Sample] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    load_started: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        """Log ``what`` at its time on the load's clock (a sample's ``started``)."""
        self.log.append(f"{time.monotonic() - self.load_started:6.1f}s {what}")


def _eventually(check: Callable[[], object], *, seconds: float, what: str,
                every: float = 0.1) -> object:
    deadline = time.monotonic() + seconds
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {seconds:.0f}s for {what}")
        time.sleep(every)
    return found


def _stage(store: Store, run_id: str, ref: str) -> tuple[State, float]:
    """The stage's state and how long it has been in it."""
    run = store.get_run(run_id)
    assert not run.state.is_terminal, f"run {run.short_id} ended: {run.reason} {run.message}"
    try:
        stage = run.stage(ref)
    except KeyError:  # the delivery's stages join after its plan
        return State.QUEUED, 0.0
    since = stage.started_at.timestamp() if stage.started_at else time.time()
    return stage.state, time.time() - since


def _at(ref: str, state: State, after: float = 0.0) -> Callable[[Delivery, str], bool]:
    def reached(delivery: Delivery, run_id: str) -> bool:
        now, held = _stage(delivery.store, run_id, ref)
        return now is state and held >= after
    return reached


def _switch_intent_written(delivery: Delivery, run_id: str) -> bool:
    return any(i.run_id == run_id for i in Ledger(delivery.store).pending_intents(APP))


def _switched_but_unrecorded(delivery: Delivery, run_id: str) -> bool:
    """The production Service selects the new slot; the ledger still names the old. The
    window is the switch's verification (a few hundred ms): once the intent is there,
    only the Service is read, as fast as it answers."""
    intents = [i for i in Ledger(delivery.store).pending_intents(APP) if i.run_id == run_id]
    if not intents:
        _stage(delivery.store, run_id, f"prod:{APP}")  # fails if the run ended
        return False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if serving_slot(delivery.kube, delivery.namespaces["prod"], APP) == intents[0].slot:
            return True
        time.sleep(0.005)
    return False


KILL_POINTS: list[tuple[Fault, Callable[[Delivery, str], bool]]] = [
    (Fault("after bake", f"staging:{APP}", whole_worker=False),
     _at(f"bake:{APP}", State.SUCCEEDED)),
    (Fault("mid-staging", f"staging:{APP}", whole_worker=False),
     _at(f"staging:{APP}", State.RUNNING, after=0.5)),
    (Fault("mid-canary", f"canary:{APP}", whole_worker=False),
     _at(f"canary:{APP}", State.RUNNING, after=6)),
    (Fault("just before the switch", f"prod:{APP}", whole_worker=True),
     _switch_intent_written),
    (Fault("just after the switch", f"prod:{APP}", whole_worker=True),
     _switched_but_unrecorded),
    (Fault("mid-scale-down", f"scale-down:{APP}", whole_worker=True),
     _at(f"scale-down:{APP}", State.RUNNING, after=2)),
]


def _kill(stack: Stack, run: RunRecord, *, whole_worker: bool) -> list[int]:
    """SIGKILLs the processes running ``run``'s flow run, and with ``whole_worker`` the
    worker too, all at one instant: the flow is frozen (SIGSTOP) before the worker dies,
    so it cannot notice the worker gone (its output pipe broken) and act on it. Returns
    the flow's pids."""
    flow_run = str(run.prefect_flow_run_id)
    pids = flow_processes(flow_run)
    assert pids or whole_worker, f"no process runs flow run {flow_run}"
    _signal_all(pids, signal.SIGSTOP)
    if whole_worker:
        worker = BackgroundProcess("prefect-worker-shipyard", stack.home / "prefect")
        assert worker.stop(terms=0), "the stack's worker was not running"  # SIGKILL
    _signal_all(pids, signal.SIGKILL)
    return pids


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _newest_release(store: Store, after: RunRecord | None) -> RunRecord:
    def found() -> RunRecord | None:
        newest = store.list_runs(limit=1, pipeline="release")
        if newest and (after is None or newest[0].id != after.id):
            run = store.get_run(newest[0].id)
            return run if run.prefect_flow_run_id else None
        return None
    return _eventually(found, seconds=60, what="the release to be handed to Prefect")  # type: ignore[return-value]


def _store_equals_cluster(delivery: Delivery) -> None:
    """The ledger's production release is the slot the production Service selects, no
    switch is left pending, and no deploy lock is held."""
    ledger = Ledger(delivery.store)
    current = ledger.current_release(APP, "prod")
    assert current is not None
    assert serving_slot(delivery.kube, delivery.namespaces["prod"], APP) == current.slot
    assert ledger.pending_intents(APP) == []
    locks = DeployLocks(delivery.store)
    assert locks.holder(APP, "prod") is None and locks.holder(APP, "staging") is None


def _deliver_through_faults(delivery: Delivery, source: Path, commit: str) -> None:
    stack, store = delivery.stack, delivery.store
    started = stack.shipyard("release", "--repo", str(source), "--ref", commit, "--app",
                             APP, "--warm-seconds", "12", "--no-wait")
    assert started.returncode == 0, started.stdout + started.stderr
    run = _newest_release(store, None)
    delivery.note(f"started run {run.short_id}")
    for fault, reached in KILL_POINTS:
        _eventually(lambda: reached(delivery, run.id), seconds=SECONDS_PER_FAULT,  # noqa: B023
                    what=f"run {run.short_id} to reach '{fault.name}'", every=0.01)
        killed = time.monotonic()
        pids = _kill(stack, run, whole_worker=fault.whole_worker)
        stages = ", ".join(f"{st.ref} {st.state.value}" for st in store.get_run(run.id).stages)
        delivery.note(f"killed run {run.short_id} {fault.name}, pids {pids} ({stages})")
        if fault.whole_worker:
            up = stack.shipyard("up", "--only", "prefect", timeout=300)
            assert up.returncode == 0, up.stdout + up.stderr
        settled = _eventually(
            lambda: (r := store.get_run(run.id)).state.is_terminal and r,  # noqa: B023
            seconds=ABANDON_AFTER_SECONDS + 60, what=f"run {run.short_id} to be settled")
        fault.settled_after = time.monotonic() - killed
        fault.run = settled  # type: ignore[assignment]
        assert fault.run is not None
        assert (fault.run.state, fault.run.reason) == (State.FAILED, "Abandoned"), \
            fault.run.message
        _eventually(lambda: _quiet(delivery), seconds=30,
                    what="the drift reconciler to settle the switch intents")
        _store_equals_cluster(delivery)
        resumed = stack.shipyard("restart", run.short_id, "--from", fault.restart_from,
                                 "--no-wait")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        run = _newest_release(store, run)
        delivery.note(f"resumed as run {run.short_id}")
        # Working again once the resumed run runs the stage the fault cut (the next
        # fault may cut that same stage, so it is not waited through).
        _eventually(lambda: _started(store, run.id, fault.restart_from),  # noqa: B023
                    seconds=SECONDS_PER_FAULT,
                    what=f"run {run.short_id} to start {fault.restart_from}")
        fault.recovered_after = time.monotonic() - killed
        delivery.faults.append(fault)
    delivery.final = _eventually(
        lambda: (r := store.get_run(run.id)).state.is_terminal and r,
        seconds=SECONDS_PER_FAULT, what=f"run {run.short_id} to end")  # type: ignore[assignment]


def _quiet(delivery: Delivery) -> bool:
    return not Ledger(delivery.store).pending_intents(APP)


def _started(store: Store, run_id: str, ref: str) -> bool:
    run = store.get_run(run_id)
    if run.state.is_terminal and run.state is not State.SUCCEEDED:
        raise AssertionError(f"run {run.short_id} ended {run.state.value}: {run.reason} "
                             f"{run.message}")
    return any(s.ref == ref and s.state is not State.QUEUED for s in run.stages)


async def _under_load(made: Delivery, url: str, work: Callable[[], None]) -> list[Sample]:
    made.load_started = time.monotonic()
    # Availability is under test, not latency: two cores run the delivery, its restarts
    # and the unit tests beside production, so an answer may be a few seconds late.
    load = start_load(LoadSpec(base_url=url, rate_per_second=20, duration_seconds=1500,
                               max_requests=40_000, keep_alive=False, timeout_seconds=5))
    try:
        await asyncio.to_thread(work)
    finally:
        samples = await load.stop()
    return samples


class InBackground:
    """The delivery through every fault, on a thread of its own: the unit and app tests
    run meanwhile (see the root conftest), and the assertions join it."""

    def __init__(self, made: Delivery, work: Callable[[], None]) -> None:
        self.made = made
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True,
                                       name="crash-recovery delivery")
        self.thread.start()

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as err:  # handed to the assertions, which raise it
            self.error = err

    def joined(self, seconds: float) -> Delivery:
        self.thread.join(seconds)
        assert not self.thread.is_alive(), f"the delivery was not done after {seconds:.0f}s"
        if self.error is not None:
            raise AssertionError(f"the delivery through the faults failed: "
                                 f"{type(self.error).__name__}: {self.error}; what "
                                 f"happened: {self.made.log[:-1]}") from self.error
        return self.made


# Session-scoped, not module-scoped: the unit tests run between this module's first test
# and its assertions, and pytest finalizes a module's fixtures when the next test is
# another module's, which would join the delivery there (holding the unit tests back)
# and start a second one for the assertions.
@pytest.fixture(scope="session")
def background(prefect_stack: Stack, source_repo: SourceRepo, real_cluster: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[InBackground]:
    """The delivery through every fault, started once for the module's assertions."""
    stack = prefect_stack
    store = Store.open(stack.store_url)
    kube = Kube.from_kubeconfig(real_cluster)
    prefix = stack.env["SHIPYARD_NAMESPACE_PREFIX"]
    namespaces = {env: prefix + env for env in ("staging", "prod")}
    repo = Repo(source_repo.path)
    repo.create_head("crashes", source_repo.good).checkout()
    readme = source_repo.path / f"apps/{APP}/README.md"
    readme.write_text(readme.read_text() + "\nA version delivered through crashes.\n")
    repo.index.add([str(readme.relative_to(source_repo.path))])
    commit = repo.index.commit("A version of discovery delivered through crashes",
                               author=AUTHOR, committer=AUTHOR).hexsha
    repo.heads["main"].checkout()
    made = Delivery(stack, store, kube, namespaces, commit[:12])
    # The sweeper under test: shipyard ui's own, judging a stopped heartbeat in seconds.
    env = {**stack.env, "SHIPYARD_ABANDON_AFTER_SECONDS": str(ABANDON_AFTER_SECONDS),
           "SHIPYARD_SWEEP_INTERVAL_SECONDS": "1"}
    logs = tmp_path_factory.mktemp("crash-ui")

    def everything() -> None:
        if Ledger(store).current_release(APP, "prod") is None:  # alone: a baseline first
            first = stack.shipyard("release", "--repo", str(source_repo.path), "--ref",
                                   source_repo.good, "--app", APP, timeout=1200)
            assert first.returncode == 0, first.stdout[-3000:] + first.stderr
        with serve_ui(env, logs) as ui:
            try:
                made.samples = asyncio.run(_under_load(
                    made, service_url(kube, namespaces["prod"], APP),
                    lambda: _deliver_through_faults(made, source_repo.path, commit)))
            finally:
                if not BackgroundProcess("prefect-worker-shipyard",
                                         stack.home / "prefect").pid():
                    stack.shipyard("up", "--only", "prefect", timeout=300)  # later tests
                made.log.append(ui.output()[-2000:])

    running = InBackground(made, everything)
    yield running
    running.thread.join(1800)
    store.close()


@pytest.fixture(scope="session")
def delivery(background: InBackground) -> Delivery:
    return background.joined(1500)


@pytest.mark.starts_in_background
def test_the_delivery_through_the_faults_is_under_way(background: InBackground) -> None:
    """Only its start, not even its first run (a baseline release may come first): the
    unit and app tests run while it goes on, and the assertions below join it."""
    time.sleep(2)  # long enough for a fixture that fails at once to have failed
    assert background.error is None, background.error
    assert background.thread.is_alive() or background.made.log


@pytest.mark.timeout(1800)
def test_each_fault_is_settled_as_abandoned_with_its_evidence(delivery: Delivery) -> None:
    assert [f.name for f in delivery.faults] == [f.name for f, _ in KILL_POINTS]
    for fault in delivery.faults:
        assert fault.run is not None
        evidence = fault.run.message
        if fault.whole_worker:
            assert "no heartbeat" in evidence, (fault.name, evidence)
        else:
            assert "ended CRASHED" in evidence, (fault.name, evidence)
        print(f"{fault.name:>24}: settled {fault.settled_after:5.1f}s after the kill, "
              f"running {fault.restart_from} again {fault.recovered_after:5.1f}s after it")


@pytest.mark.timeout(1800)
def test_the_delivery_resumed_after_the_last_fault_reaches_production(
        delivery: Delivery) -> None:
    final = delivery.final
    assert final is not None and final.state is State.SUCCEEDED, final
    current = Ledger(delivery.store).current_release(APP, "prod")
    assert current is not None and current.version == delivery.version
    _store_equals_cluster(delivery)
    # No canary or baseline track outlived the delivery killed mid-canary.
    tracks = delivery.kube.pods(
        delivery.namespaces["prod"],
        f"app.kubernetes.io/name={APP},shipyard.dev/track in (baseline,canary)")
    assert all(p["metadata"].get("deletionTimestamp") for p in tracks), tracks


@pytest.mark.timeout(1800)
def test_the_switch_recorded_by_nobody_is_recorded_from_its_intent(
        delivery: Delivery) -> None:
    after_switch = next(f for f in delivery.faults if f.name == "just after the switch")
    assert after_switch.run is not None
    releases = Ledger(delivery.store).releases(APP, "prod")
    repaired = [r for r in releases if r.run_id == after_switch.run.id]
    assert repaired and repaired[0].version == delivery.version
    audited = [e for e in Ledger(delivery.store).audit_trail(limit=500)
               if e.action == "ledger.repaired" and e.subject_id.startswith(APP)]
    assert audited


@pytest.mark.timeout(1800)
def test_production_answered_every_request_throughout(delivery: Delivery) -> None:
    failed = [s for s in delivery.samples if s.status != 200]
    versions = {s.version for s in delivery.samples if s.status == 200}
    slow = sorted(delivery.samples, key=lambda s: s.latency)[-5:]
    print(f"production: {len(delivery.samples)} requests, {len(failed)} failed, "
          f"versions {sorted(versions)}; slowest " + ", ".join(
              f"{s.latency:.2f}s at {s.started:.1f}s" for s in slow))
    print("\n".join(delivery.log[:-1]))
    assert len(delivery.samples) > 1000
    assert failed == []
    assert delivery.version in versions
