"""The ``@stage`` decorator: a stage function becomes a Prefect task whose life is recorded.

A stage function is ``async def fn(ctx: StageContext, **inputs) -> Result`` where ``Result``
is a pydantic model (its fields become the stage's outputs; its ``summary()`` the success
message). The decorator wraps it so that, without the stage doing anything:

* the stage goes queued → running when it starts, and running → succeeded with its outputs,
  or → failed with a reason, when it ends; stages downstream of a failure are skipped;
* a retried attempt is counted on the same stage instead of starting it again;
* ``ctx.log()`` lines go to the store (followable live, up to its cap of
  ``SHIPYARD_STAGE_LOG_MAX_LINES``), to the stage's full log file and to Prefect's run
  logger; a stage whose log passed the cap keeps that file as an artifact of the run
  (kind ``log``), the others' file is deleted when they end (the store holds it all);
* a timeout fails the stage with reason ``TimedOut``, a cancellation cancels it;
* in a flow run that Prefect suspended and resumed (a manual judgment, see
  :mod:`stages.judgment`), which runs its body again from the top, a stage already
  recorded as succeeded does not run again: it returns its recorded outputs;
* in a restart (:mod:`stages.restart`), a stage that succeeded in the restarted run and
  lies before the restart point is not run: it is recorded ``Reused`` with that run's
  outputs, unless it is not ``reusable`` (a checkout, a lock, a verdict).

The same lifecycle (:func:`run_stage`) records the steps that run in the flow's body, not
as tasks (a manual judgment, which must be able to suspend the flow run). This module and
:mod:`stages.lifecycle` are the only code outside the store that moves a state.

Pipelines call the task with a :class:`RunContext` first and may name the stage's ref
(``stage_ref="test:gateway"``) when one stage function appears several times in a run.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, cast, get_type_hints

import anyio
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.logging import get_run_logger
from prefect.runtime import task_run
from pydantic import BaseModel

from shipyard.adapters.stage_log_files import StageLogFile
from shipyard.domain.redaction import redact_text
from shipyard.domain.states import State
from shipyard.settings import Settings, load_settings
from shipyard.store import Ledger, RunRecord, StageRecord, Store

__all__ = ["RunContext", "StageContext", "StageFailure", "StageResult", "current_settings",
           "open_store", "pause_key", "resumed_pause_keys", "reuse_outputs",
           "run_id_of_pause_keys", "run_stage", "stage"]

R = TypeVar("R", bound="StageResult")
T = TypeVar("T")

_FLUSH_LINES = 50
_FLUSH_SECONDS = 0.5
_PAUSE_KEY = re.compile(r"shipyard-(?P<run_id>[0-9a-f]{32})-[A-Za-z0-9-]+")


class StageResult(BaseModel):
    """Base of every stage's typed output."""

    success_reason: ClassVar[str] = "Succeeded"

    def summary(self) -> str:
        """One line for the stage's success message."""
        return ""


class StageFailure(Exception):
    """An expected failure of a stage, with a CamelCase reason (``TestsFailed``) and,
    optionally, outputs to record all the same (a failed canary's report)."""

    def __init__(self, reason: str, message: str,
                 outputs: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.outputs = outputs


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a pipeline hands each stage: which run it belongs to, who started it (the
    actor releases are recorded under) and, in a restart, the run it restarts and the
    stages that run again (the others reuse that run's outputs). Plain data, so Prefect
    can show it as a parameter."""

    run_id: str
    restart_of: str | None = None
    rerun: tuple[str, ...] = ()
    actor: str = ""


_stores: dict[tuple[str, int], Store] = {}
_stores_lock = threading.Lock()


def current_settings() -> Settings:
    """The settings for the current ``SHIPYARD_*`` environment, read once per distinct
    environment (reading them costs milliseconds, and every stage needs them)."""
    return _settings_for(tuple(sorted(
        (key, value) for key, value in os.environ.items() if key.startswith("SHIPYARD_"))))


@functools.lru_cache(maxsize=8)
def _settings_for(_environment: tuple[tuple[str, str], ...]) -> Settings:
    return load_settings()


def resumed_pause_keys() -> frozenset[str]:
    """The pause keys the current flow run had already used when it (re)started: empty
    outside a flow and on a first run; not empty when Prefect resumed a suspended flow run,
    which runs its body again from the top."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return frozenset()
    return frozenset(context.flow_run.empirical_policy.pause_keys or ())


def pause_key(run: RunContext, name: str) -> str:
    """A Prefect pause key for a wait of ``run`` (``name``: letters, digits and dashes, as
    Prefect requires of keys). It names the run, so that a flow run resumed after a
    suspension finds its run again (:func:`run_id_of_pause_keys`)."""
    key = f"shipyard-{run.run_id}-{name}"
    if not _PAUSE_KEY.fullmatch(key):
        raise ValueError(f"pause key {key!r} must be 'shipyard-', a run id, '-' and letters, "
                         "digits or dashes")
    return key


def run_id_of_pause_keys(keys: frozenset[str]) -> str | None:
    """The run that the keys made by :func:`pause_key` name, if any does."""
    for key in sorted(keys):
        if found := _PAUSE_KEY.fullmatch(key):
            return found["run_id"]
    return None


def open_store(settings: Settings | None = None) -> Store:
    """This process's store for the configured database (opened once, migrated once),
    capping each stage's log at ``SHIPYARD_STAGE_LOG_MAX_LINES`` lines."""
    settings = settings or current_settings()
    key = (settings.store_url, settings.stage_log_max_lines)
    with _stores_lock:  # stages open it from worker threads, possibly at once
        if key not in _stores:
            _stores[key] = Store.open(key[0], log_max_lines=key[1])
        return _stores[key]


@dataclass
class StageContext:
    """What a running stage may use: its identity, settings, store and log."""

    run_id: str
    ref: str
    attempt: int
    settings: Settings
    store: Store
    recorded: StageRecord | None = None
    """The stage as recorded before this attempt began, when a resumed flow run reads it
    (a judgment that was waiting when its flow run was suspended)."""
    _pending: list[str] = field(default_factory=list, repr=False)
    _last_flush: float = field(default_factory=time.monotonic, repr=False)
    _log_file: StageLogFile = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._log_file = StageLogFile(self.settings.stage_logs_dir, self.run_id, self.ref)

    async def log(self, text: str) -> None:
        """Add output to the stage's log; lines reach the store in small batches."""
        self._pending.append(text if text.endswith("\n") else text + "\n")
        if len(self._pending) >= _FLUSH_LINES or (
            time.monotonic() - self._last_flush > _FLUSH_SECONDS
        ):
            await self.flush()

    async def flush(self) -> None:
        """Write buffered log lines now."""
        if not self._pending:
            return
        # No log line may show a repository URL's credentials, whoever wrote it.
        chunk, self._pending = redact_text("".join(self._pending)), []
        self._last_flush = time.monotonic()
        await asyncio.to_thread(self._write_log, chunk)
        _prefect_logger().info(chunk.rstrip("\n"))

    def _write_log(self, chunk: str) -> None:
        # The file first: what the store drops past its cap is on disk by then.
        self._log_file.append(chunk)
        self.store.append_log(self.run_id, self.ref, chunk, full_log=str(self._log_file.path))

    def keep_full_log(self) -> None:
        """As the stage ends: record its full log file as an artifact of the run when the
        store dropped some of it (kind ``log``, its SHA-256 as digest), else delete it.
        Keeping a log never changes how the stage ends: a failure is only reported."""
        try:
            if not self._log_file.exists():
                return
            run = self.store.get_run(self.run_id)
            if not run.stage(self.ref).log_lines_dropped:
                self._log_file.remove()  # every line is in the store
                return
            _record_log_artifact(self.store, run, self.ref, self._log_file)
        except Exception as err:
            _prefect_logger().warning(f"the full log of stage {self.ref} is in "
                                      f"{self._log_file.path}, but was not recorded as an "
                                      f"artifact: {type(err).__name__}: {err}")

    async def wait(self, reason: str, message: str, outputs: dict[str, Any]) -> None:
        """The running stage waits for a person (a judgment): ``waiting``, with what it
        waits for in its outputs."""
        await self.flush()
        await asyncio.to_thread(self.store.transition_stage, self.run_id, self.ref,
                                State.WAITING, reason=reason, message=message, outputs=outputs)

    async def resume(self, reason: str, message: str) -> None:
        """The waiting stage runs again (it was answered)."""
        await asyncio.to_thread(self.store.transition_stage, self.run_id, self.ref,
                                State.RUNNING, reason=reason, message=message)

    async def mark_rolled_back(self, ref: str, message: str) -> None:
        """Another stage of this run, which had succeeded, was undone by this one (the
        coordinated rollback)."""
        await asyncio.to_thread(self.store.transition_stage, self.run_id, ref,
                                State.ROLLED_BACK, reason="RolledBack", message=message)


class StageTask(Protocol):
    """What ``@stage`` returns: a Prefect task called with the run and the stage inputs."""

    name: str

    def __call__(self, run: RunContext, *args: Any, **kwargs: Any) -> Awaitable[Any]: ...


def stage(
    ref: str,
    *,
    retries: int = 0,
    retry_delay_seconds: float = 0,
    timeout_seconds: float | None = None,
    reusable: bool = True,
) -> Callable[[Callable[..., Awaitable[R]]], StageTask]:
    """Turn a stage function into a recorded Prefect task with default ref ``ref``. A stage
    that is not ``reusable`` runs again in every restart (see :func:`run_stage`)."""

    def decorate(fn: Callable[..., Awaitable[R]]) -> StageTask:
        result_model = cast(type[R], get_type_hints(fn)["return"])

        @functools.wraps(fn)
        async def run_recorded(run: RunContext, *args: Any, stage_ref: str | None = None,
                               **kwargs: Any) -> R:
            return await run_stage(
                run, stage_ref or ref, result_model,
                lambda ctx: fn(ctx, *args, **kwargs),
                attempt=max(1, int(task_run.run_count or 1)), retries=retries,
                timeout_seconds=timeout_seconds, reusable=reusable)

        run_recorded.__signature__ = _task_signature(fn, ref)  # type: ignore[attr-defined]
        prefect_task = task(
            name=ref,
            task_run_name="{stage_ref}",
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
            cache_policy=NO_CACHE,
            persist_result=False,
        )(run_recorded)
        return cast(StageTask, prefect_task)

    return decorate


async def run_stage(run: RunContext, ref: str, result_model: type[R],
                    body: Callable[[StageContext], Awaitable[R]], *, attempt: int = 1,
                    retries: int = 0, timeout_seconds: float | None = None,
                    reusable: bool = True) -> R:
    """The one lifecycle of a recorded stage: ``body`` runs between ``running`` and
    ``succeeded`` (with its result as outputs) or ``failed`` (with a reason) or
    ``cancelled``; a retried attempt is counted on the same stage; a stage a resumed flow
    run already ended, or a restart may reuse, does not run. Signals that are not errors
    (Prefect suspending the flow run) pass through unrecorded."""
    settings = current_settings()
    store = await asyncio.to_thread(open_store, settings)
    ctx = StageContext(run.run_id, ref, attempt, settings, store)
    if resumed_pause_keys():
        ctx.recorded = (await asyncio.to_thread(store.get_run, run.run_id)).stage(ref)
        done = _recorded_outcome(ctx.recorded, result_model)
        if done is not None:
            return done
    elif reusable:
        reused = await reuse_outputs(store, run, ref, result_model.model_validate)
        if reused is not None:
            return reused
    if ctx.recorded is None or ctx.recorded.state is State.QUEUED:
        await _begin(ctx, retries)
    try:
        # The timeout is ours, not Prefect's: Prefect's cancels this wrapper too, before it
        # could record why the stage ended.
        async with asyncio.timeout(timeout_seconds):
            result = await body(ctx)
    except asyncio.CancelledError:
        with anyio.CancelScope(shield=True):
            await _end(ctx, State.CANCELLED, "Cancelled", "the stage was cancelled")
        raise
    except Exception as err:
        reason, message = _describe(err, timeout_seconds)
        await ctx.log(f"{reason}: {message}")
        if attempt <= retries:
            await ctx.log(f"attempt {attempt} of {retries + 1} failed; retrying")
            await ctx.flush()
            raise
        await _end(ctx, State.FAILED, reason, message,
                   err.outputs if isinstance(err, StageFailure) else None)
        raise
    await _end(ctx, State.SUCCEEDED, result.success_reason, result.summary(),
               result.model_dump(mode="json"))
    return result


def _recorded_outcome(recorded: StageRecord, model: type[R]) -> R | None:
    """What the stage ended with before the flow run was suspended: its outputs again if it
    succeeded (re-validated into its result model), its failure again if it failed; None
    if it has not ended yet."""
    if recorded.state is State.SUCCEEDED:
        _prefect_logger().info(f"stage {recorded.ref} succeeded before the flow run was "
                               "suspended; its recorded outputs are used again")
        return model.model_validate(recorded.outputs)
    if recorded.state.is_terminal:
        raise StageFailure(recorded.reason, recorded.message)
    return None


async def reuse_outputs(store: Store, run: RunContext, ref: str,
                        read: Callable[[dict[str, Any]], T]) -> T | None:
    """In a restart, the restarted run's outputs of stage ``ref`` (through ``read``),
    recorded as ``Reused`` in this run, when it succeeded there and ``ref`` is not among the
    stages the restart runs again; None (run it) otherwise."""
    if run.restart_of is None or ref in run.rerun:
        return None
    original = await asyncio.to_thread(store.get_run, run.restart_of)
    before = next((s for s in original.stages if s.ref == ref), None)
    if before is None or before.state is not State.SUCCEEDED:
        return None
    value = read(before.outputs)  # a model that no longer reads them fails before a write
    await asyncio.to_thread(store.reuse_stage, run.run_id, ref, outputs=before.outputs,
                            message=f"reused from run {original.short_id}: {before.message}")
    return value


async def _begin(ctx: StageContext, retries: int) -> None:
    if ctx.attempt > 1:
        await asyncio.to_thread(ctx.store.record_attempt, ctx.run_id, ctx.ref,
                                f"attempt {ctx.attempt} of {retries + 1}")
        return
    await asyncio.to_thread(ctx.store.transition_stage, ctx.run_id, ctx.ref, State.RUNNING,
                            reason="Started", message="")


async def _end(ctx: StageContext, to: State, reason: str, message: str,
               outputs: dict[str, Any] | None = None) -> None:
    await ctx.flush()
    # Before the stage ends: whoever sees it ended finds its log artifact too.
    await asyncio.to_thread(ctx.keep_full_log)
    await asyncio.to_thread(ctx.store.transition_stage, ctx.run_id, ctx.ref, to,
                            reason=reason, message=redact_text(message), outputs=outputs)


def _record_log_artifact(store: Store, run: RunRecord, ref: str, log: StageLogFile) -> None:
    Ledger(store).record_artifact(run_id=run.id, stage_ref=ref, app=run.app or "", kind="log",
                                  name=str(log.path), digest=log.digest(),
                                  commit_sha=run.commit_sha)


def _describe(err: BaseException, timeout_seconds: float | None) -> tuple[str, str]:
    if isinstance(err, StageFailure):
        return err.reason, err.message
    if isinstance(err, TimeoutError):
        return "TimedOut", f"the stage ran past its timeout of {timeout_seconds}s"
    return "Error", f"{type(err).__name__}: {err}"


def _task_signature(fn: Callable[..., Any], ref: str) -> inspect.Signature:
    """The stage function's signature with ``ctx`` replaced by ``run`` and ``stage_ref``
    added, so Prefect shows and binds the real inputs."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    run_param = inspect.Parameter("run", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                  annotation=RunContext)
    ref_param = inspect.Parameter("stage_ref", inspect.Parameter.KEYWORD_ONLY,
                                  annotation=str, default=ref)
    return inspect.Signature([run_param, *params, ref_param])


def _prefect_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:
        return logging.getLogger("shipyard.stages")
