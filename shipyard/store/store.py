"""The store's front door: sessions, and the one place where run and stage state changes.

Every change of state goes through :meth:`Store.transition_stage` or
:meth:`Store.transition_run`, which ask :func:`shipyard.domain.states.transition` whether
the move is allowed, write the new state and a :class:`~shipyard.store.models.StateTransition`
row in one transaction, and skip the stages that can no longer run. A refused move raises
and writes nothing.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from shipyard.domain.clock import Clock, system_clock
from shipyard.domain.pipeline import PipelineGraph, StageSpec, run_outcome
from shipyard.domain.stage_logs import MARKER_STREAM, cap_chunk, truncation_marker
from shipyard.domain.states import State, transition
from shipyard.store.engine import WRITE, open_engine, retry_when_locked, retry_when_unavailable
from shipyard.store.errors import AmbiguousRunId, RunNotFound, StageNotFound
from shipyard.store.migrate import upgrade_to_head
from shipyard.store.models import (
    Base,
    DeployLock,
    PipelineRun,
    StageLog,
    StageRun,
    StateTransition,
    comparable_id,
)
from shipyard.store.records import LogChunk, RunRecord, StageRecord, TransitionRecord

__all__ = ["Store"]

T = TypeVar("T")

_MIN_PREFIX = 4

_INSERT_RUN = insert(Base.metadata.tables[PipelineRun.__tablename__])
_INSERT_TRANSITION = insert(Base.metadata.tables[StateTransition.__tablename__])
_INSERT_STAGE = insert(Base.metadata.tables[StageRun.__tablename__])


class Store:
    """Runs, stages, logs and transitions. Thread-safe; one per process is plenty.

    ``log_max_lines`` caps each stage's log (see :meth:`append_log`); None keeps every
    line. The flows' stores are opened with ``SHIPYARD_STAGE_LOG_MAX_LINES``.
    """

    def __init__(self, engine: Engine, *, clock: Clock = system_clock,
                 log_max_lines: int | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.log_max_lines = log_max_lines
        self._reader = sessionmaker(engine, expire_on_commit=False)
        self._writer = sessionmaker(engine.execution_options(**{WRITE: True}),
                                    expire_on_commit=False)
        # SQLite lets one transaction write at a time. Threads of one process wait their
        # turn here, in order, rather than in SQLite's busy handler, which sleeps in steps
        # of up to 100 ms whoever comes first; other processes still meet the busy handler.
        self._one_writer: AbstractContextManager[object] = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext())

    @classmethod
    def open(cls, url: str, *, clock: Clock = system_clock,
             log_max_lines: int | None = None) -> Store:
        """Open the database at ``url`` and bring its schema up to date."""
        engine = open_engine(url)
        upgrade_to_head(engine)
        return cls(engine, clock=clock, log_max_lines=log_max_lines)

    @property
    def url(self) -> str:
        """The database URL, password hidden: safe to print."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    # -- sessions -----------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for queries only."""
        with self._reader() as session:
            yield session

    def writing(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one write transaction, repeated if SQLite reports a lock or
        PostgreSQL went away meanwhile (restarted: for up to 30 s)."""

        def attempt() -> T:
            with self._one_writer, self._writer() as session, session.begin():
                return work(session)

        return retry_when_unavailable(lambda: retry_when_locked(attempt))

    # -- creating runs ------------------------------------------------------------------

    def create_run(
        self,
        pipeline: str,
        stages: Iterable[StageSpec],
        *,
        trigger: str,
        actor: str = "",
        app: str | None = None,
        repo_url: str | None = None,
        ref: str | None = None,
        commit_sha: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        prefect_flow_run_id: str | None = None,
        restarted_from: str | None = None,
    ) -> RunRecord:
        """Record a queued run with its stage DAG; the graph is validated first."""
        graph = PipelineGraph.of(stages)
        run_id = self.writing(lambda session: self.add_run(
            session, pipeline, graph, trigger=trigger, actor=actor, app=app,
            repo_url=repo_url, ref=ref, commit_sha=commit_sha, parameters=parameters,
            prefect_flow_run_id=prefect_flow_run_id, restarted_from=restarted_from))
        return self.get_run(run_id)

    def add_run(
        self,
        session: Session,
        pipeline: str,
        graph: PipelineGraph,
        *,
        trigger: str,
        actor: str = "",
        app: str | None = None,
        repo_url: str | None = None,
        ref: str | None = None,
        commit_sha: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        prefect_flow_run_id: str | None = None,
        restarted_from: str | None = None,
    ) -> str:
        """Add a queued run to the write transaction of ``session`` (see :meth:`writing`)
        and return its id: for records that must be written together with the run, or not
        at all (the webhook delivery that asked for it)."""
        now = self.clock()
        run_id = uuid.uuid4().hex
        message = f"{pipeline} run created by {trigger}"
        # Plain INSERTs: the webhook answers once this commits, and the unit of work costs
        # three times as much CPU for objects nobody reads back.
        connection = session.connection()
        connection.execute(_INSERT_RUN, {
            "id": run_id, "pipeline": pipeline, "app": app, "trigger": trigger,
            "actor": actor, "repo_url": repo_url, "ref": ref, "commit_sha": commit_sha,
            "parameters": dict(parameters or {}), "state": State.QUEUED.value,
            "reason": "Created", "message": message, "created_at": now,
            "prefect_flow_run_id": prefect_flow_run_id, "restarted_from": restarted_from})
        connection.execute(_INSERT_TRANSITION, {
            "run_id": run_id, "stage_ref": "", "from_state": None,
            "to_state": State.QUEUED.value, "reason": "Created", "message": message,
            "at": now})
        self._add_stage_rows(session, run_id, graph.stages, start_position=0)
        return run_id

    def add_stages(self, run_id: str, stages: Iterable[StageSpec]) -> RunRecord:
        """Append stages to a run whose later stages are known only once it runs (e.g. one
        test stage per changed app). The whole graph, old and new, is validated."""
        new = tuple(stages)

        def work(session: Session) -> None:
            run = self._load_run(session, run_id, for_update=True)
            existing = [_stage_spec(s) for s in run.stages]
            PipelineGraph.of([*existing, *new])
            self._add_stage_rows(session, run.id, new, start_position=len(existing))

        self.writing(work)
        return self.get_run(run_id)

    def _add_stage_rows(self, session: Session, run_id: str, specs: Iterable[StageSpec],
                        *, start_position: int) -> None:
        rows = [{"run_id": run_id, "ref": spec.ref, "name": spec.title, "position": position,
                 "requires": list(spec.requires), "state": State.QUEUED.value,
                 "reason": "Created", "message": "", "attempts": 0, "outputs": {}}
                for position, spec in enumerate(specs, start=start_position)]
        if rows:
            session.connection().execute(_INSERT_STAGE, rows)

    def link_flow_run(self, run_id: str, flow_run_id: str) -> None:
        """Remember which Prefect flow run executes this run (for drill-down links)."""

        def work(session: Session) -> None:
            self._load_run(session, run_id, for_update=True).prefect_flow_run_id = flow_run_id

        self.writing(work)

    # -- handing runs to Prefect --------------------------------------------------------

    def awaiting_hand_over(self, *, created_before: datetime | None = None,
                           limit: int = 100) -> list[RunRecord]:
        """Queued runs that no Prefect flow run has taken yet, oldest first, without their
        stages; only those created before ``created_before`` if given."""
        query = (select(PipelineRun)
                 .where(PipelineRun.state == State.QUEUED.value,
                        PipelineRun.prefect_flow_run_id.is_(None))
                 .order_by(PipelineRun.created_at, PipelineRun.id).limit(limit))
        if created_before is not None:
            query = query.where(PipelineRun.created_at < created_before)
        with self.reading() as session:
            return [_run_record(run, with_stages=False) for run in session.scalars(query)]

    def unfinished_runs(self, *, limit: int = 1000) -> list[RunRecord]:
        """Runs not yet final that some process should be moving (queued runs a flow run
        took, and every running or waiting run), oldest first, without their stages: what
        the sweeper checks for a dead process."""
        query = (select(PipelineRun)
                 .where(PipelineRun.state.in_([State.RUNNING.value, State.WAITING.value])
                        | ((PipelineRun.state == State.QUEUED.value)
                           & PipelineRun.prefect_flow_run_id.is_not(None)))
                 .order_by(PipelineRun.created_at, PipelineRun.id).limit(limit))
        with self.reading() as session:
            return [_run_record(run, with_stages=False) for run in session.scalars(query)]

    def beat(self, run_id: str) -> None:
        """Note that the flow running ``run_id`` is alive now (a final run is left alone)."""
        at = self.clock()
        self.writing(lambda session: session.execute(
            update(PipelineRun)
            .where(PipelineRun.id == run_id,
                   PipelineRun.state.in_([State.QUEUED.value, State.RUNNING.value,
                                          State.WAITING.value]))
            .values(heartbeat_at=at)))

    def abandon_run(self, run_id: str, *, evidence: str) -> RunRecord | None:
        """Settle a run whose process is gone: unfinished stages end with reason
        ``Abandoned`` (queued ones skipped, the others failed), the run fails with reason
        ``Abandoned`` and ``evidence`` as its message, and its deploy locks are given
        back, in one transaction. None when the run had ended meanwhile (nothing changes).
        """

        def work(session: Session) -> bool:
            run = self._load_run(session, run_id, for_update=True)
            if State(run.state).is_terminal:
                return False
            if run.state == State.QUEUED.value:
                self._apply(session, run, None, State.RUNNING, "Started", "run started")
            for stage in run.stages:
                current = State(stage.state)
                if current is State.QUEUED:
                    self._apply(session, run, stage, State.SKIPPED, "Abandoned",
                                "the run's process is gone: " + evidence)
                elif not current.is_terminal:
                    self._apply(session, run, stage, State.FAILED, "Abandoned",
                                "the run's process is gone: " + evidence)
            self._apply(session, run, None, State.FAILED, "Abandoned", evidence)
            session.execute(delete(DeployLock).where(DeployLock.run_id == run_id))
            return True

        return self.get_run(run_id) if self.writing(work) else None

    def note_hand_over_refused(self, run_ids: Iterable[str] | None, error: str, *,
                               besides: Collection[str] = ()) -> int:
        """Say on each run (still queued, not yet taken) that Prefect did not take it:
        those of ``run_ids``, or, given None, every waiting run but those of ``besides``.

        The run keeps its state; its reason becomes ``AwaitingPrefect`` and its message the
        error, so ``shipyard show`` explains the wait. The history gets a ``HandOverFailed``
        entry (queued to queued) the first time and whenever the error changes, not on
        every retry. Returns how many runs were noted. One transaction for all.
        """
        message = (f"Prefect did not take the run: {error}; it stays queued and is handed "
                   "over when Prefect answers")
        ids = None if run_ids is None else list(run_ids)
        waiting = (PipelineRun.state == State.QUEUED.value) & \
            PipelineRun.prefect_flow_run_id.is_(None)
        if ids is not None:
            waiting = waiting & PipelineRun.id.in_(ids)
        else:
            # Those already saying so are left alone; the others, beyond any batch.
            waiting = waiting & ((PipelineRun.reason != "AwaitingPrefect")
                                 | (PipelineRun.message != message))
            if besides:
                waiting = waiting & PipelineRun.id.not_in(list(besides))

        def work(session: Session) -> int:
            runs = session.scalars(
                select(PipelineRun).where(waiting).order_by(PipelineRun.id)
                .with_for_update())
            noted = 0
            for run in runs:
                if run.reason != "AwaitingPrefect" or run.message != message:
                    self._note_queued(session, run, "HandOverFailed", message)
                    run.reason, run.message = "AwaitingPrefect", message
                    noted += 1
            return noted

        return self.writing(work) if ids is None or ids else 0

    def record_hand_over(self, run_id: str, flow_run_id: str) -> RunRecord:
        """Link the run to the Prefect flow run that took it. A run that was waiting for
        Prefect says so in its history and its reason becomes ``HandedOver``."""

        def work(session: Session) -> None:
            run = self._load_run(session, run_id, for_update=True)
            run.prefect_flow_run_id = flow_run_id
            if run.state == State.QUEUED.value and run.reason == "AwaitingPrefect":
                message = f"Prefect took the run as flow run {flow_run_id}"
                self._note_queued(session, run, "HandedOver", message)
                run.reason, run.message = "HandedOver", message

        self.writing(work)
        return self.get_run(run_id)

    def _note_queued(self, session: Session, run: PipelineRun, reason: str,
                     message: str) -> None:
        # A note in the history of a queued run, not a change of state: the table of
        # transitions is not asked, and from and to are both queued.
        session.add(StateTransition(run_id=run.id, stage_ref="",
                                    from_state=State.QUEUED.value, to_state=State.QUEUED.value,
                                    reason=reason, message=message, at=self.clock()))

    def record_commit(self, run_id: str, commit_sha: str) -> None:
        """Remember the exact commit a run checked out (its ref may move later)."""
        if not re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", commit_sha):
            raise ValueError(f"commit {commit_sha!r} is not a full hexadecimal git sha")

        def work(session: Session) -> None:
            self._load_run(session, run_id, for_update=True).commit_sha = commit_sha

        self.writing(work)

    # -- state changes ------------------------------------------------------------------

    def transition_stage(
        self,
        run_id: str,
        ref: str,
        to: State,
        *,
        reason: str,
        message: str = "",
        outputs: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """Move one stage to ``to``; stages that can no longer run are skipped with it.

        The run itself starts running with its first stage. Raises
        :class:`~shipyard.domain.states.TransitionForbidden` (nothing written) when the table
        forbids the move.
        """

        def work(session: Session) -> None:
            run = self._load_run(session, run_id, for_update=True)
            stage = _find_stage(run, ref)
            self._apply(session, run, stage, to, reason, message)
            if outputs:
                stage.outputs = {**stage.outputs, **outputs}
            self._follow_stage(session, run, ref, to)
            if to in (State.FAILED, State.CANCELLED, State.SKIPPED, State.ROLLED_BACK):
                self._skip_unreachable(session, run)

        self.writing(work)
        return self.get_run(run_id)

    def _follow_stage(self, session: Session, run: PipelineRun, ref: str, to: State) -> None:
        # The run mirrors its stages' progress: it starts with the first stage, waits while
        # any stage waits for a judgment, and runs again once the judgment is answered.
        current = State(run.state)
        if to is State.RUNNING and current is State.QUEUED:
            self._apply(session, run, None, State.RUNNING, "StageStarted", f"stage {ref} started")
        elif to is State.WAITING and current is State.RUNNING:
            self._apply(session, run, None, State.WAITING, "AwaitingJudgment",
                        f"stage {ref} waits for a judgment")
        elif to is not State.WAITING and current is State.WAITING and not any(
            s.state == State.WAITING.value for s in run.stages
        ):
            self._apply(session, run, None, State.RUNNING, "JudgmentAnswered",
                        f"stage {ref} is no longer waiting")

    def reuse_stage(self, run_id: str, ref: str, *, message: str,
                    outputs: Mapping[str, Any]) -> RunRecord:
        """Record a queued stage as done by an earlier run (a restart): running, then
        succeeded with reason ``Reused`` and that run's ``outputs``, in one transaction."""

        def work(session: Session) -> None:
            run = self._load_run(session, run_id, for_update=True)
            stage = _find_stage(run, ref)
            for to in (State.RUNNING, State.SUCCEEDED):
                self._apply(session, run, stage, to, "Reused", message)
                self._follow_stage(session, run, ref, to)
            stage.outputs = dict(outputs)

        self.writing(work)
        return self.get_run(run_id)

    def record_attempt(self, run_id: str, ref: str, message: str) -> None:
        """Count one more attempt of a running stage (a retry), without changing state."""

        def work(session: Session) -> None:
            run = self._load_run(session, run_id, for_update=True)
            stage = _find_stage(run, ref)
            stage.attempts += 1
            stage.message = message

        self.writing(work)

    def transition_run(self, run_id: str, to: State, *, reason: str,
                       message: str = "") -> RunRecord:
        """Move the run itself; cancelling it also cancels every unfinished stage."""

        def work(session: Session) -> None:
            run = self._load_run(session, run_id, for_update=True)
            self._apply(session, run, None, to, reason, message)
            if to is State.CANCELLED:
                for stage in run.stages:
                    if not State(stage.state).is_terminal:
                        self._apply(session, run, stage, State.CANCELLED, "RunCancelled",
                                    message or "the run was cancelled")

        self.writing(work)
        return self.get_run(run_id)

    def cancel_run(self, run_id: str, *, reason: str, message: str) -> RunRecord:
        """Cancel the run and every unfinished stage of it (see :meth:`transition_run`)."""
        return self.transition_run(run_id, State.CANCELLED, reason=reason, message=message)

    def finish_run(self, run_id: str, *, error: str | None = None) -> RunRecord:
        """End the run in the state its stages add up to (see
        :func:`~shipyard.domain.pipeline.run_outcome`).

        Stages still queued or running at this point were abandoned by the flow, so they
        fail with reason ``Abandoned``. ``error`` is an error of the pipeline itself (not of
        a stage): it fails the run with reason ``PipelineError`` even if every stage
        succeeded. Finishing a finished run changes nothing.
        """

        def work(session: Session) -> None:
            run = self._load_run(session, run_id, for_update=True)
            if State(run.state).is_terminal:
                return
            if run.state == State.QUEUED.value:
                self._apply(session, run, None, State.RUNNING, "Started", "run started")
            never_started = []
            for stage in run.stages:
                current = State(stage.state)
                if current is State.QUEUED:
                    # A queued stage cannot fail without running, so it is skipped; the run
                    # must still not count it as skipped by a condition (see below).
                    never_started.append(stage.ref)
                    self._apply(session, run, stage, State.SKIPPED, "Abandoned",
                                "the pipeline ended before this stage was started")
                elif not current.is_terminal:
                    self._apply(session, run, stage, State.FAILED, "Abandoned",
                                "the pipeline ended while this stage was unfinished")
            states = [State(s.state) for s in run.stages]
            outcome = run_outcome(states) or State.SUCCEEDED
            if error and outcome is State.SUCCEEDED:
                self._apply(session, run, None, State.FAILED, "PipelineError", error)
            elif never_started and outcome is State.SUCCEEDED:
                self._apply(session, run, None, State.FAILED, "Abandoned",
                            "the pipeline ended without starting stages: "
                            + ", ".join(never_started))
            else:
                self._apply(session, run, None, outcome, *_outcome_reason(run, outcome))

        self.writing(work)
        return self.get_run(run_id)

    def _apply(self, session: Session, run: PipelineRun, stage: StageRun | None, to: State,
               reason: str, message: str) -> None:
        target: PipelineRun | StageRun = stage if stage is not None else run
        subject = f"stage {stage.ref!r} of run {run.id[:8]}" if stage else f"run {run.id[:8]}"
        accepted = transition(State(target.state), to, reason=reason, message=message,
                              clock=self.clock, subject=subject)
        target.state = to.value
        target.reason = reason
        target.message = message
        if to is State.RUNNING and target.started_at is None:
            target.started_at = accepted.at
        if to is State.RUNNING and isinstance(target, StageRun) and (
            accepted.from_state is State.QUEUED
        ):
            target.attempts += 1
        if to.is_terminal:
            target.finished_at = accepted.at
        session.add(StateTransition(
            run_id=run.id, stage_ref=stage.ref if stage else "",
            from_state=accepted.from_state.value, to_state=to.value, reason=reason,
            message=message, at=accepted.at,
        ))

    def _skip_unreachable(self, session: Session, run: PipelineRun) -> None:
        graph = PipelineGraph.of(_stage_spec(s) for s in run.stages)
        by_ref = {s.ref: s for s in run.stages}
        for decision in graph.skips({s.ref: State(s.state) for s in run.stages}):
            self._apply(session, run, by_ref[decision.ref], State.SKIPPED,
                        "RequirementNotMet", decision.message)

    # -- reading ------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        """The run whose id is ``run_id`` or starts with it (at least 4 characters)."""
        with self.reading() as session:
            return _run_record(self._load_run(session, run_id))

    def list_runs(self, *, limit: int = 20, pipeline: str | None = None,
                  app: str | None = None, state: State | None = None) -> list[RunRecord]:
        """The newest runs first, without their stages."""
        query = select(PipelineRun).order_by(PipelineRun.created_at.desc(),
                                             PipelineRun.id.desc()).limit(limit)
        if pipeline:
            query = query.where(PipelineRun.pipeline == pipeline)
        if app:
            query = query.where(PipelineRun.app == app)
        if state:
            query = query.where(PipelineRun.state == state.value)
        with self.reading() as session:
            return [_run_record(run, with_stages=False) for run in session.scalars(query)]

    def transitions(self, run_id: str) -> list[TransitionRecord]:
        """Every transition of the run and its stages, oldest first."""
        with self.reading() as session:
            run = self._load_run(session, run_id)
            rows = session.scalars(select(StateTransition)
                                   .where(StateTransition.run_id == run.id)
                                   .order_by(StateTransition.id))
            return [TransitionRecord(r.stage_ref, State(r.from_state) if r.from_state else None,
                                     State(r.to_state), r.reason, r.message, r.at)
                    for r in rows]

    # -- logs ---------------------------------------------------------------------------

    def append_log(self, run_id: str, ref: str, text: str, *, stream: str = "stdout",
                   full_log: str | None = None) -> int:
        """Add a chunk of output to a stage's log; return how many of the stage's lines the
        store has dropped so far.

        Past :attr:`log_max_lines` lines the stage's log stops growing: the rest of the
        chunk, and every later one, is counted and dropped, and one marker line
        (``truncated: N lines dropped; the full log is in FULL_LOG``, stream
        ``truncated``) after the kept lines says so, rewritten with each drop rather than
        repeated. The caller keeps the full log, in ``full_log``.
        """
        if not text:
            return 0
        at = self.clock()

        def work(session: Session) -> int:
            query = select(StageRun).where(StageRun.run_id == run_id, StageRun.ref == ref)
            stage = session.scalar(query.with_for_update())
            if stage is None:  # an id prefix, an unknown run or an unknown stage
                stage = _find_stage(self._load_run(session, run_id, for_update=True), ref)
            capped = cap_chunk(text, kept_before=stage.log_lines, cap=self.log_max_lines)
            if capped.kept:
                session.add(StageLog(stage_run_id=stage.id, at=at, stream=stream,
                                     text=capped.kept))
                stage.log_lines += capped.kept_lines
            if capped.dropped_lines:
                self._mark_truncated(session, stage, capped.dropped_lines, full_log, at)
            return stage.log_lines_dropped

        return self.writing(work)

    def _mark_truncated(self, session: Session, stage: StageRun, dropped: int,
                        full_log: str | None, at: datetime) -> None:
        marker_id = None
        if stage.log_lines_dropped:
            # The newest of the stage's rows, or nearly: nothing is added after it unless
            # the cap was raised since.
            marker_id = session.scalar(
                select(StageLog.id).where(StageLog.stage_run_id == stage.id,
                                          StageLog.stream == MARKER_STREAM)
                .order_by(StageLog.id.desc()).limit(1))
        stage.log_lines_dropped += dropped
        marker = truncation_marker(stage.log_lines_dropped, full_log)
        if marker_id is None:
            session.add(StageLog(stage_run_id=stage.id, at=at, stream=MARKER_STREAM,
                                 text=marker))
        else:
            session.execute(update(StageLog).where(StageLog.id == marker_id)
                            .values(text=marker, at=at))

    def read_logs(self, run_id: str, ref: str | None = None, *, after_id: int = 0,
                  limit: int | None = None) -> list[LogChunk]:
        """Log chunks newer than ``after_id``, oldest first, at most ``limit`` of them;
        pass the last id to read on or follow."""
        with self.reading() as session:
            run = self._load_run(session, run_id)
            query = (select(StageLog, StageRun.ref).join(StageRun)
                     .where(StageRun.run_id == run.id,
                            StageLog.id > comparable_id(after_id))
                     .order_by(StageLog.id).limit(limit))
            if ref is not None:
                _find_stage(run, ref)
                query = query.where(StageRun.ref == ref)
            return [LogChunk(log.id, stage_ref, log.at, log.stream, log.text)
                    for log, stage_ref in session.execute(query)]

    # -- helpers ------------------------------------------------------------------------

    def _load_run(self, session: Session, run_id: str, *,
                  for_update: bool = False) -> PipelineRun:
        query = select(PipelineRun).options(selectinload(PipelineRun.stages))
        if for_update:
            query = query.with_for_update()
        run = session.scalar(query.where(PipelineRun.id == run_id))
        if run is not None:
            return run
        if len(run_id) < _MIN_PREFIX or not run_id.isalnum():
            raise RunNotFound(run_id)
        matches = list(session.scalars(
            select(PipelineRun.id).where(PipelineRun.id.startswith(run_id.lower())).limit(6)))
        if not matches:
            raise RunNotFound(run_id)
        if len(matches) > 1:
            raise AmbiguousRunId(run_id, matches)
        found = session.scalar(query.where(PipelineRun.id == matches[0]))
        assert found is not None
        return found


def _find_stage(run: PipelineRun, ref: str) -> StageRun:
    for stage in run.stages:
        if stage.ref == ref:
            return stage
    raise StageNotFound(run.id, ref, [s.ref for s in run.stages])


def _stage_spec(stage: StageRun) -> StageSpec:
    return StageSpec(stage.ref, tuple(stage.requires), stage.name)


def _outcome_reason(run: PipelineRun, outcome: State) -> tuple[str, str]:
    def refs(state: State) -> str:
        return ", ".join(s.ref for s in run.stages if s.state == state.value)

    if outcome is State.FAILED:
        failed = [s for s in run.stages if s.state == State.FAILED.value]
        detail = "; ".join(f"{s.ref} {s.reason}: {s.message}" for s in failed)
        return "StageFailed", f"failed: {detail}"
    if outcome is State.CANCELLED:
        return "StageCancelled", f"cancelled stages: {refs(State.CANCELLED)}"
    if outcome is State.ROLLED_BACK:
        return "RolledBack", f"rolled back stages: {refs(State.ROLLED_BACK)}"
    return "Succeeded", "every stage succeeded or was skipped by its condition"


def _stage_record(stage: StageRun) -> StageRecord:
    return StageRecord(
        ref=stage.ref, name=stage.name, requires=tuple(stage.requires),
        state=State(stage.state), reason=stage.reason, message=stage.message,
        attempts=stage.attempts, started_at=stage.started_at, finished_at=stage.finished_at,
        outputs=dict(stage.outputs or {}), log_lines=stage.log_lines,
        log_lines_dropped=stage.log_lines_dropped,
    )


def _run_record(run: PipelineRun, *, with_stages: bool = True) -> RunRecord:
    return RunRecord(
        id=run.id, pipeline=run.pipeline, app=run.app, trigger=run.trigger, actor=run.actor,
        repo_url=run.repo_url, ref=run.ref, commit_sha=run.commit_sha,
        parameters=dict(run.parameters or {}), state=State(run.state), reason=run.reason,
        message=run.message, created_at=run.created_at, started_at=run.started_at,
        finished_at=run.finished_at, prefect_flow_run_id=run.prefect_flow_run_id,
        restarted_from=run.restarted_from,
        stages=tuple(_stage_record(s) for s in run.stages) if with_stages else (),
        heartbeat_at=run.heartbeat_at,
    )

