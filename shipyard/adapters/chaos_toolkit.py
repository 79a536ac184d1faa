"""Chaos Toolkit's engine (``chaostoolkit-lib``) behind three calls: read an experiment
file, validate an experiment, run one and return its journal.

The run happens in the calling thread, which may be any thread: Chaos Toolkit's
``run_experiment`` installs signal handlers first, which only the main thread may do, so
:func:`run_experiment` runs its ``Runner`` without them off the main thread (a stage runs
it in a worker thread, :func:`~shipyard.adapters.blocking.run_blocking`). The rollbacks
run whatever happened (:data:`ROLLBACK_STRATEGY`), and if the engine itself fails midway
they are run all the same before the error is reported in the journal: a fault left
injected would outlive the experiment.

Chaos Toolkit keeps a process-wide cache of the activities of the experiment it runs (for
``ref``); two experiments should not run at once in one process, and the gates run one at a
time.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from chaoslib.activity import ensure_activity_is_valid
from chaoslib.caching import cache_activities, clear_cache
from chaoslib.exceptions import ChaosException
from chaoslib.exit import exit_signals
from chaoslib.experiment import ensure_experiment_is_valid
from chaoslib.hypothesis import ensure_hypothesis_tolerance_is_valid
from chaoslib.run import (
    EventHandlerRegistry,
    RunEventHandler,
    Runner,
    apply_rollbacks,
    initialize_run_journal,
)
from chaoslib.types import Strategy

from shipyard.domain.chaos_experiments import InvalidChaosExperiment

__all__ = ["ROLLBACK_STRATEGY", "Event", "chaoslib_version", "parse_experiment",
           "read_experiment", "run_experiment", "validate_experiment"]

ROLLBACK_STRATEGY = "always"
"""Chaos Toolkit's ``runtime.rollbacks.strategy`` for every run. Its ``default`` skips the
rollbacks of a run whose status is ``failed`` (a probe raised) or ``interrupted``, and
``deviated`` skips them when the experiment passed: either would leave an injected fault in
the environment. ``always`` undoes the method whatever the verdict, so rollbacks must be
safe to run when the method did nothing (``clear_faults`` is)."""

Event = Callable[[str, Mapping[str, Any]], None]
"""Told of each step as it happens: ``(kind, data)``, kinds ``hypothesis-before``,
``hypothesis-after`` (data: the state, once judged), ``method``, ``rollbacks`` (started),
``activity`` (data: the activity, when it starts) and ``activity-done`` (data: its run)."""

_SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
_VALIDATION_ERRORS = (ChaosException, TypeError, AttributeError, KeyError, ValueError)
"""What Chaos Toolkit's validation raises on a malformed document: its own errors, and
Python's when a field has the wrong shape (``method: [1]``)."""


def chaoslib_version() -> str:
    from chaoslib import __version__

    return str(__version__)


def read_experiment(path: Path) -> dict[str, Any]:
    """The experiment in the JSON or YAML file ``path`` (by its suffix);
    :class:`InvalidChaosExperiment` naming the file when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidChaosExperiment(f"{path}: cannot be read: {err}") from err
    return parse_experiment(text, source=str(path))


def parse_experiment(text: str, *, source: str) -> dict[str, Any]:
    """The experiment in ``text``, JSON or YAML by ``source``'s suffix (YAML, which reads
    JSON too, when it has none of theirs)."""
    kind = _SUFFIXES.get(Path(source).suffix.lower(), "yaml")
    try:
        document = json.loads(text) if kind == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise InvalidChaosExperiment(f"{source}: not valid {kind.upper()}: "
                                     f"{' '.join(str(err).split())}") from err
    if not isinstance(document, dict):
        raise InvalidChaosExperiment(f"{source}: an experiment is a mapping (title, "
                                     f"description, steady-state-hypothesis, method, "
                                     f"rollbacks), not {type(document).__name__}")
    return document


def validate_experiment(experiment: Mapping[str, Any], *, source: str) -> None:
    """Chaos Toolkit's own validation (``ensure_experiment_is_valid``: the title and
    description, each activity and its provider, the tolerances, the configuration, the
    controls); :class:`InvalidChaosExperiment` naming ``source`` and the problem.

    It imports the modules the Python activities name, to check their arguments against
    the functions: refuse what may not run before calling it."""
    try:
        ensure_experiment_is_valid(copy.deepcopy(dict(experiment)))
    except _VALIDATION_ERRORS as err:
        where = _refused_activity(experiment)
        raise InvalidChaosExperiment(f"{source}: {where}{_message(err)}") from err


def _refused_activity(experiment: Mapping[str, Any]) -> str:
    """Where the first activity Chaos Toolkit refuses on its own is (``method[1]
    (inject-latency): ``), or "" when each activity passes alone: its validation names
    the problem, not the place."""
    hypothesis = experiment.get("steady-state-hypothesis")
    sections = [("steady-state-hypothesis.probes",
                 hypothesis.get("probes") if isinstance(hypothesis, Mapping) else None),
                ("method", experiment.get("method")),
                ("rollbacks", experiment.get("rollbacks"))]
    for section, activities in sections:
        for index, activity in enumerate(activities if isinstance(activities, list) else []):
            try:
                ensure_activity_is_valid(copy.deepcopy(activity))
                if section.startswith("steady") and isinstance(activity, Mapping):
                    ensure_hypothesis_tolerance_is_valid(activity["tolerance"])
            except _VALIDATION_ERRORS:
                name = activity.get("name") if isinstance(activity, Mapping) else None
                return f"{section}[{index}]" + (f" ({name})" if name else "") + ": "
    return ""


def run_experiment(experiment: Mapping[str, Any], *,
                   on_event: Event | None = None) -> dict[str, Any]:
    """Run ``experiment`` (validated) with Chaos Toolkit's default hypothesis strategy
    (before and after the method) and :data:`ROLLBACK_STRATEGY`; return the journal.

    A configuration Chaos Toolkit cannot load is :class:`InvalidChaosExperiment`. If the
    engine fails once the run began, the rollbacks not yet run are run, and the journal
    comes back with status ``aborted`` and the error as ``engine_error``."""
    document = copy.deepcopy(dict(experiment))
    events = _Events(on_event)
    runner = _Runner(Strategy.DEFAULT)
    runner.register_event_handler(events)
    settings = {"runtime": {"rollbacks": {"strategy": ROLLBACK_STRATEGY}}}
    cache_activities(document)
    try:
        try:
            runner.configure(document, settings, {})
        except _VALIDATION_ERRORS as err:
            raise InvalidChaosExperiment(f"configuration: {_message(err)}") from err
        try:
            return runner.run_configured(document)
        except Exception as err:  # the engine's own failure: undo the method all the same
            journal = events.journal or initialize_run_journal(document)
            journal["status"] = "aborted"
            journal["engine_error"] = f"{type(err).__name__}: {_message(err)}"
            if not journal.get("rollbacks"):
                runs: list[Any] = []
                journal["rollbacks"] = runs
                registry = EventHandlerRegistry()
                registry.register(events)
                apply_rollbacks(document, runner.config, runner.secrets, None, None,
                                registry, runs)
            return journal
    finally:
        clear_cache()


class _Runner(Runner):  # type: ignore[misc]  # chaoslib is untyped
    """Chaos Toolkit's runner, able to run off the main thread."""

    def run_configured(self, experiment: dict[str, Any]) -> dict[str, Any]:
        """``Runner.run`` once configured: its signal handlers only in the main thread,
        the only one where Python lets them be installed."""
        def run() -> dict[str, Any]:
            return dict(self._run(self.strategy, self.schedule, experiment, None, self.config,
                                  self.secrets, self.settings, self.event_registry))

        if threading.current_thread() is threading.main_thread():
            with exit_signals():
                return run()
        return run()


class _Events(RunEventHandler):  # type: ignore[misc]  # chaoslib is untyped
    """Chaos Toolkit's run events, passed on; keeps the journal it is handed at the start,
    for a run the engine itself breaks off."""

    def __init__(self, emit: Event | None) -> None:
        self.emit = emit
        self.journal: dict[str, Any] | None = None

    def _tell(self, kind: str, data: Mapping[str, Any]) -> None:
        if self.emit is not None:
            self.emit(kind, data)

    def started(self, experiment: Any, journal: dict[str, Any]) -> None:
        self.journal = journal

    def start_hypothesis_before(self, experiment: Any) -> None:
        self._tell("hypothesis-before", {})

    def hypothesis_before_completed(self, experiment: Any, state: Any, journal: Any) -> None:
        self._tell("hypothesis-before-done", state or {})

    def start_method(self, experiment: Any) -> None:
        self._tell("method", {})

    def start_hypothesis_after(self, experiment: Any) -> None:
        self._tell("hypothesis-after", {})

    def hypothesis_after_completed(self, experiment: Any, state: Any, journal: Any) -> None:
        self._tell("hypothesis-after-done", state or {})

    def start_rollbacks(self, experiment: Any) -> None:
        self._tell("rollbacks", {})

    def start_activity(self, activity: Any) -> None:
        self._tell("activity", activity or {})

    def activity_completed(self, activity: Any, run: Any) -> None:
        self._tell("activity-done", run or {})


def _message(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
