"""What a Chaos Toolkit journal says happened, as the gate's :class:`ChaosReport`.

The journal is Chaos Toolkit's record of a run (``chaoslib.run``): its ``status``
(completed, failed, aborted, interrupted), whether it ``deviated``, the hypothesis
``steady_states`` before and after the method (each probe's run and whether it met its
tolerance), the method's ``run`` and the ``rollbacks``, every activity with its start,
end, output and exception. The verdict follows Chaos Toolkit's: a hypothesis unmet before
the method aborts, one unmet after it deviates; the gate adds that an action of the method
that failed aborts too (the experiment did not do what it says), and that a failed
rollback fails the gate whatever the verdict (:attr:`ChaosReport.reason`).

Probes read best as what they measured: a probe held to ``within_slo`` becomes one row per
rule (requests, failure ratio, p99), a ``range`` on a field of the output becomes that
field against the range, and any other tolerance is shown as written with Chaos Toolkit's
word on it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from shipyard.domain.chaos import (
    ActivityRun,
    ChaosReport,
    HypothesisResult,
    Kill,
    ProbeResult,
    Tolerance,
    Window,
)
from shipyard.domain.chaos_experiments import ACTIVITIES_MODULE, SloTolerance

__all__ = ["describe_step", "jsonable", "report_from_journal", "trim_journal"]

OUTPUT_CHARS = 4000
"""The most of an activity's output a report keeps (as JSON text)."""
JOURNAL_CHARS = 100_000
"""The most of a journal a report keeps: an extension's probe may return megabytes."""
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_MODULE_PATH = re.compile(r"^(?:\w+\.)+(?=\w+: )")
"""The module path of an exception's class, as ``shipyard.adapters.kube.KubeError: ...``."""


def report_from_journal(journal: Mapping[str, Any], *, target: str = "",
                        source: str = "") -> ChaosReport:
    """The report of the run ``journal`` records. ``target`` says what the experiment
    aimed at (the gate's selector), ``source`` where the experiment came from."""
    experiment = _mapping(journal.get("experiment"))
    configuration = {k: v for k, v in _mapping(experiment.get("configuration")).items()
                     if not isinstance(v, Mapping)}
    start = _moment(journal.get("start"))
    hypothesis = _mapping(experiment.get("steady-state-hypothesis"))
    title = str(hypothesis.get("title", ""))
    states = _mapping(journal.get("steady_states"))
    before_state, after_state = states.get("before"), states.get("after")
    before = _hypothesis(title, before_state, configuration)
    after = None if not isinstance(after_state, Mapping) else _hypothesis(
        title, after_state, configuration)
    method = tuple(_activity(r, start) for r in _runs(journal.get("run")))
    kills, candidates = _kills(_runs(journal.get("run")), start)
    status = str(journal.get("status") or "")
    stopped = ""
    if status in ("aborted", "interrupted"):
        stopped = f"Chaos Toolkit reports the run {status}" + (
            "" if before_state is not None else " before the hypothesis was judged") + (
            f": {journal['engine_error']}" if journal.get("engine_error") else "")
    elif not isinstance(before_state, Mapping):
        stopped = "the steady-state hypothesis was never judged"
    return ChaosReport(
        experiment=str(experiment.get("title", "")), target=target,
        candidates=tuple(candidates), before_window=_span(before_state, start),
        before=before, kills=tuple(kills),
        after_window=_span(after_state, start) if after is not None else None, after=after,
        method=method,
        rollbacks=tuple(_activity(r, start) for r in _runs(journal.get("rollbacks"))),
        stopped=stopped, source=source, journal=trim_journal(journal))


def describe_step(kind: str, data: Mapping[str, Any]) -> str | None:
    """One line of progress for a step of a run as Chaos Toolkit announces it (the
    adapter's events: ``hypothesis-before``, ``activity-done``...), or None for a step not
    worth a line."""
    if kind in ("hypothesis-before", "hypothesis-after"):
        return f"steady state {kind.split('-')[1]} the method: probing"
    if kind in ("hypothesis-before-done", "hypothesis-after-done"):
        held = "held" if data.get("steady_state_met") else "did NOT hold"
        return f"steady state {kind.split('-')[1]} the method {held}"
    if kind in ("method", "rollbacks"):
        return f"{kind}: starting"
    if kind == "activity":
        return f"{data.get('type', 'activity')} {data.get('name', '?')}: started"
    if kind == "activity-done":
        activity = _mapping(data.get("activity"))
        what = f"{activity.get('type', 'activity')} {activity.get('name', '?')}"
        if data.get("status") != "succeeded":
            return f"{what}: FAILED: {_error(data)}"
        return f"{what}: succeeded ({_brief(data.get('output'))})"
    return None


def _brief(output: object) -> str:
    """An activity's output in a few words: a window of load by its counts, pods killed
    by name, anything else as short JSON."""
    if isinstance(output, Mapping):
        if {"requests", "failures", "latency_p99"} <= output.keys():
            return (f"{output['requests']} requests, {output['failures']} failed, "
                    f"p99 {_text(output['latency_p99'], 12)}s")
        if "killed" in output:
            return f"killed {', '.join(str(p) for p in output.get('killed') or [])}"
    return _text(output, 160)


def _hypothesis(title: str, state: object,
                configuration: Mapping[str, Any]) -> HypothesisResult:
    if not isinstance(state, Mapping):
        return HypothesisResult(title, False, ())
    runs = _runs(state.get("probes"))
    probes = [p for run in runs for p in _probe_results(run, configuration, len(runs) > 1)]
    return HypothesisResult(title, bool(state.get("steady_state_met")), tuple(probes))


def _probe_results(run: Mapping[str, Any], configuration: Mapping[str, Any],
                   several: bool) -> list[ProbeResult]:
    """One probe run of a hypothesis as the rows the report shows."""
    activity = _mapping(run.get("activity"))
    name = str(activity.get("name", "probe"))
    tolerance = activity.get("tolerance")
    written = Tolerance.written(_text(tolerance, 200))
    if run.get("status") != "succeeded":
        return [ProbeResult(name, "value", None, written, False,
                            f"failed: {_error(run)}")]
    met, output = bool(run.get("tolerance_met")), run.get("output")
    if isinstance(tolerance, Mapping):
        provider = _mapping(tolerance.get("provider"))
        if (tolerance.get("type") == "probe" and provider.get("module") == ACTIVITIES_MODULE
                and provider.get("func") == "within_slo" and isinstance(output, Mapping)):
            arguments = {k: _resolved(v, configuration)
                         for k, v in _mapping(provider.get("arguments")).items()
                         if k != "value"}
            try:
                rules = SloTolerance.from_arguments(arguments).judge(output)
            except ValueError:
                pass
            else:
                prefix = f"{name} " if several else ""
                return [replace(r, name=prefix + r.name) for r in rules]
        if tolerance.get("type") == "range":
            target = tolerance.get("target")
            value = output.get(target) if target and isinstance(output, Mapping) else output
            bounds = tolerance.get("range")
            if (isinstance(bounds, list) and len(bounds) == 2
                    and all(_number(b) is not None for b in bounds)):
                written = Tolerance.between(float(bounds[0]), float(bounds[1]))
            return [ProbeResult(name, str(target or "value"), _number(value), written, met,
                                "" if _number(value) is not None else _text(value, 200))]
    value = _number(output)
    return [ProbeResult(name, "value", value, written, met,
                        "" if value is not None else _text(output, 200))]


def _activity(run: Mapping[str, Any], start: datetime | None) -> ActivityRun:
    activity = _mapping(run.get("activity"))
    succeeded = run.get("status") == "succeeded"
    return ActivityRun(name=str(activity.get("name") or activity.get("ref") or "?"),
                       kind=str(activity.get("type", "action")), succeeded=succeeded,
                       window=Window(_offset(run.get("start"), start),
                                     _offset(run.get("end"), start)),
                       output=jsonable(run.get("output"), max_chars=OUTPUT_CHARS),
                       error="" if succeeded else _error(run))


def _kills(runs: Sequence[Mapping[str, Any]],
           start: datetime | None) -> tuple[list[Kill], list[str]]:
    """The pods Shipyard's ``kill_pods`` actions killed (at the end of their action) and
    the pods they chose among."""
    kills: list[Kill] = []
    candidates: list[str] = []
    for run in runs:
        provider = _mapping(_mapping(run.get("activity")).get("provider"))
        output = run.get("output")
        if (provider.get("module") != ACTIVITIES_MODULE or provider.get("func") != "kill_pods"
                or not isinstance(output, Mapping)):
            continue
        at = _offset(run.get("end"), start)
        kills += [Kill(str(pod), at) for pod in output.get("killed") or []]
        candidates += [str(p) for p in output.get("candidates") or [] if p not in candidates]
    return kills, candidates


def _span(state: object, start: datetime | None) -> Window:
    """From the first probe's start to the last one's end."""
    runs = _runs(state.get("probes")) if isinstance(state, Mapping) else []
    if not runs:
        return Window(0.0, 0.0)
    return Window(_offset(runs[0].get("start"), start), _offset(runs[-1].get("end"), start))


def trim_journal(journal: Mapping[str, Any], *, output_chars: int = OUTPUT_CHARS,
                 total_chars: int = JOURNAL_CHARS) -> dict[str, Any]:
    """``journal`` as JSON-able data of at most about ``total_chars``: outputs cut to
    ``output_chars``, exceptions to their last lines, the experiment's secrets redacted
    (references to where they are read from stay); if that is still too big, outputs cut
    harder, then the experiment's body dropped."""
    for limit in (output_chars, 500):
        trimmed = _trimmed(journal, limit)
        if len(json.dumps(trimmed)) <= total_chars:
            return trimmed
    trimmed["experiment"] = {"title": _mapping(journal.get("experiment")).get("title"),
                             "trimmed": "the experiment was too big to keep"}
    return trimmed


def _trimmed(journal: Mapping[str, Any], limit: int) -> dict[str, Any]:
    def run(r: object) -> object:
        if not isinstance(r, Mapping):
            return jsonable(r, max_chars=limit)
        kept = {k: jsonable(v, max_chars=limit) for k, v in r.items()
                if k not in ("output", "exception")}
        kept["output"] = jsonable(r.get("output"), max_chars=limit)
        if r.get("exception"):
            kept["exception"] = _error(r)
        return kept

    def state(s: object) -> object:
        if not isinstance(s, Mapping):
            return jsonable(s, max_chars=limit)
        return {**{k: jsonable(v, max_chars=limit) for k, v in s.items() if k != "probes"},
                "probes": [run(p) for p in _runs(s.get("probes"))]}

    result = {k: jsonable(v, max_chars=limit) for k, v in journal.items()
              if k not in ("experiment", "run", "rollbacks", "steady_states")}
    experiment = dict(_mapping(journal.get("experiment")))
    if "secrets" in experiment:
        experiment["secrets"] = _redacted(experiment["secrets"])
    result["experiment"] = jsonable(experiment, max_chars=limit * 10)
    states = _mapping(journal.get("steady_states"))
    result["steady_states"] = {"before": state(states.get("before")),
                               "after": state(states.get("after")),
                               "during": [state(s) for s in states.get("during") or []]}
    result["run"] = [run(r) for r in _runs(journal.get("run"))]
    result["rollbacks"] = [run(r) for r in _runs(journal.get("rollbacks"))]
    return result


def _redacted(secrets: object) -> object:
    """Secrets with their values hidden; a reference to where one is read from stays."""
    if isinstance(secrets, Mapping):
        if "type" in secrets and "key" in secrets:
            return {"type": str(secrets["type"]), "key": str(secrets["key"])}
        return {str(k): _redacted(v) for k, v in secrets.items()}
    return "<redacted>"


def jsonable(value: object, *, max_chars: int = OUTPUT_CHARS) -> Any:
    """``value`` as JSON data (dicts, lists, strings, finite numbers, booleans, None) of
    at most about ``max_chars`` as JSON text: strings are cut, anything else becomes its
    ``str``, non-finite numbers become None; something still bigger becomes a preview."""
    converted = _plain(value, max_chars)
    text = json.dumps(converted)
    if len(text) <= max_chars:
        return converted
    return {"truncated": True, "chars": len(text), "preview": text[:max_chars]}


def _plain(value: object, max_chars: int) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value if len(value) <= max_chars else value[:max_chars] + "…"
    if isinstance(value, Mapping):
        return {str(k): _plain(v, max_chars) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, max_chars) for v in value]
    return _plain(str(value), max_chars)


def _error(run: Mapping[str, Any]) -> str:
    """The last line of an activity's exception (Chaos Toolkit keeps it as lines)."""
    exception = run.get("exception")
    lines = exception if isinstance(exception, list) else [str(exception or "")]
    text = "".join(str(line) for line in lines).strip().splitlines()
    last = text[-1].strip() if text else ""
    last = last.removeprefix("chaoslib.exceptions.ActivityFailed: ")
    return _MODULE_PATH.sub("", last, count=1)[:500] or "failed"


def _resolved(value: object, configuration: Mapping[str, Any]) -> object:
    """A ``${name}`` argument as Chaos Toolkit substituted it from the configuration."""
    if isinstance(value, str):
        match = _PLACEHOLDER.fullmatch(value)
        if match and match.group(1) in configuration:
            return configuration[match.group(1)]
    return value


def _runs(value: object) -> list[Mapping[str, Any]]:
    return [r for r in value if isinstance(r, Mapping)] if isinstance(value, list) else []


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _moment(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _offset(text: object, start: datetime | None) -> float:
    """Seconds from ``start`` to the moment ``text`` (0 when either is unknown)."""
    moment = _moment(text)
    if moment is None or start is None:
        return 0.0
    return round((moment - start).total_seconds(), 3)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: object, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(_plain(value, limit))
    return text if len(text) <= limit else text[:limit] + "…"
