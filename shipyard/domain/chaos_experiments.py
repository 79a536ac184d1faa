"""Chaos Toolkit experiments as the chaos gate writes, fills in and accepts them: plain data.

An experiment is Chaos Toolkit's own document (a mapping, as its JSON or YAML reads): a
``steady-state-hypothesis`` of probes with tolerances, a ``method`` of actions and probes,
and ``rollbacks``. Shipyard's probes and actions are Python activities in
:data:`ACTIVITIES_MODULE`; the gate hands them where to act through the experiment's
``configuration`` (the ``shipyard_*`` keys of :class:`GateConfiguration`), which Chaos
Toolkit substitutes into the activities' ``${name}`` placeholders.

- :func:`default_experiment` is what an app without an experiment file gets: its SLO held
  through its Service while ``chaos.kill`` of its pods are killed.
- :func:`with_configuration` fills an experiment's configuration with the gate's keys.
- :func:`refusals` is what the gate refuses to run from a repository: activities outside
  the allowed modules, commands and HTTP calls from the worker, reads of its environment.
- :class:`SloTolerance` judges a measurement of the steady state (:func:`measurement_of`)
  against an SLO, for the ``within_slo`` tolerance and for the report alike.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from string import Template
from typing import Any

from shipyard.domain.catalog import AppDescriptor, Slo
from shipyard.domain.chaos import (
    FAILURE_RATIO_CEILING,
    MIN_LOAD_SHARE,
    KillAction,
    ProbeResult,
    Tolerance,
)
from shipyard.domain.traffic import TrafficSummary

__all__ = ["ACTIVITIES", "ACTIVITIES_MODULE", "MAX_RATE_PER_SECOND", "MAX_SETTLE_SECONDS",
           "MAX_WINDOW_SECONDS", "GateConfiguration", "InvalidChaosExperiment",
           "SloTolerance", "default_experiment", "measurement_of", "refusals",
           "request_timeout", "slo_budget", "slo_probe", "title_of", "with_configuration"]

ACTIVITIES_MODULE = "stages.chaos_activities"
"""Where Shipyard's probes and actions live, as an experiment's Python providers name it."""
ACTIVITIES = frozenset({"http_steady_state", "within_slo", "kill_pods", "inject_faults",
                        "clear_faults"})
"""The functions of :data:`ACTIVITIES_MODULE` an experiment may call (Chaos Toolkit would
call any function the module holds, what it imports included)."""

MAX_WINDOW_SECONDS = 300.0
MAX_SETTLE_SECONDS = 60.0
MAX_RATE_PER_SECOND = 200.0
"""The bounds of a steady-state window, a settle and a probe's load: an experiment from a
repository may not hold the worker (or the app) longer or harder than this."""


class InvalidChaosExperiment(ValueError):
    """An experiment the gate cannot run; the message names the file and the problem."""


def slo_budget(slo: Slo) -> float:
    """The failure ratio a window may have: ``1 - availability``, never looser than
    :data:`FAILURE_RATIO_CEILING`."""
    return min(round(1 - slo.availability, 9), FAILURE_RATIO_CEILING)


def request_timeout(slo: Slo) -> float:
    """How long a probe's request may take before it counts as failed: twice the SLO's
    p99 (1 to 10 s). A request twice as slow as the SLO's p99 is failed rather than waited
    for, which bounds how long a window's stragglers hold the judgment up."""
    return min(max(1.0, 2 * slo.latency_p99_seconds), 10.0)


@dataclass(frozen=True, slots=True)
class GateConfiguration:
    """Where and how hard an experiment acts, as the gate (or ``shipyard chaos run``)
    tells its activities: the experiment's ``shipyard_*`` configuration keys."""

    kubeconfig: str
    namespace: str
    app: str
    selector: str
    service_url: str
    paths: tuple[str, ...]
    window_seconds: float
    settle_seconds: float
    rate_per_second: float
    timeout_seconds: float
    seed: int
    max_failure_ratio: float
    max_latency_p99_seconds: float
    min_load_share: float = MIN_LOAD_SHARE

    def __post_init__(self) -> None:
        if not 0 < self.window_seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(f"window_seconds must be in (0, {MAX_WINDOW_SECONDS:g}]")
        if not 0 <= self.settle_seconds <= MAX_SETTLE_SECONDS:
            raise ValueError(f"settle_seconds must be in [0, {MAX_SETTLE_SECONDS:g}]")
        if not 0 < self.rate_per_second <= MAX_RATE_PER_SECOND:
            raise ValueError(f"rate_per_second must be in (0, {MAX_RATE_PER_SECOND:g}]")
        if not self.paths or not all(p.startswith("/") for p in self.paths):
            raise ValueError(f"paths must be one or more paths starting with /, "
                             f"not {self.paths!r}")

    @classmethod
    def for_app(cls, descriptor: AppDescriptor, *, kubeconfig: str, namespace: str,
                selector: str, service_url: str, window_seconds: float,
                settle_seconds: float, rate_per_second: float, seed: int,
                paths: Sequence[str] = ()) -> GateConfiguration:
        """The configuration of an experiment on ``descriptor``'s app: its load paths
        (``/version`` when it names none), its SLO and a request timeout from it."""
        return cls(kubeconfig=kubeconfig, namespace=namespace, app=descriptor.name,
                   selector=selector, service_url=service_url,
                   paths=tuple(paths or descriptor.load_paths or ("/version",)),
                   window_seconds=window_seconds, settle_seconds=settle_seconds,
                   rate_per_second=rate_per_second,
                   timeout_seconds=request_timeout(descriptor.slo), seed=seed,
                   max_failure_ratio=slo_budget(descriptor.slo),
                   max_latency_p99_seconds=descriptor.slo.latency_p99_seconds)

    def to_configuration(self) -> dict[str, Any]:
        """The keys as an experiment's ``configuration`` holds them."""
        return {"shipyard_kubeconfig": self.kubeconfig,
                "shipyard_namespace": self.namespace,
                "shipyard_app": self.app,
                "shipyard_selector": self.selector,
                "shipyard_service_url": self.service_url,
                "shipyard_paths": list(self.paths),
                "shipyard_window_seconds": self.window_seconds,
                "shipyard_settle_seconds": self.settle_seconds,
                "shipyard_rate_per_second": self.rate_per_second,
                "shipyard_timeout_seconds": self.timeout_seconds,
                "shipyard_seed": self.seed,
                "shipyard_max_failure_ratio": self.max_failure_ratio,
                "shipyard_max_latency_p99_seconds": self.max_latency_p99_seconds,
                "shipyard_min_load_share": self.min_load_share}


def with_configuration(experiment: Mapping[str, Any],
                       configuration: Mapping[str, Any]) -> dict[str, Any]:
    """``experiment`` with ``configuration``'s keys laid over its own configuration: the
    gate, not the file, says where the experiment acts. The file's other keys stay."""
    own = experiment.get("configuration") or {}
    if not isinstance(own, Mapping):
        raise InvalidChaosExperiment("configuration: must be a mapping of names to values")
    return {**experiment, "configuration": {**own, **configuration}}


def title_of(experiment: Mapping[str, Any]) -> str:
    """The experiment's title with its configuration's ``${name}`` filled in, as Chaos
    Toolkit shows it once the run starts."""
    configuration = experiment.get("configuration")
    values = {k: v for k, v in configuration.items() if isinstance(v, str | int | float)} \
        if isinstance(configuration, Mapping) else {}
    return Template(str(experiment.get("title", ""))).safe_substitute(values)


# -- the default experiment ----------------------------------------------------------------


def _provider(func: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "python", "module": ACTIVITIES_MODULE, "func": func,
            "arguments": dict(arguments)}


def slo_probe(name: str, tolerance: SloTolerance) -> dict[str, Any]:
    """A hypothesis probe: the app's traffic through its Service over one window of load
    (``http_steady_state`` with the gate's configuration), within ``tolerance``."""
    return {
        "type": "probe", "name": name,
        "tolerance": {"type": "probe", "name": "within-slo",
                      "provider": _provider("within_slo", tolerance.to_arguments())},
        "provider": _provider("http_steady_state", {
            "url": "${shipyard_service_url}", "paths": "${shipyard_paths}",
            "seconds": "${shipyard_window_seconds}",
            "rate_per_second": "${shipyard_rate_per_second}",
            "timeout_seconds": "${shipyard_timeout_seconds}"}),
    }


def default_experiment(descriptor: AppDescriptor, *, kill: KillAction) -> dict[str, Any]:
    """The experiment of an app whose descriptor names none, as the gate ran it before it
    read Chaos Toolkit files: hold the app to its SLO through its Service (at least
    :data:`MIN_LOAD_SHARE` of the load asked for, a failure ratio of at most
    :func:`slo_budget`, the SLO's p99), kill ``kill``'s pods of the gate's selector, let
    the Service settle (the action's ``pauses.after``), judge the SLO again. Nothing to
    roll back: Kubernetes replaces the pods."""
    tolerance = SloTolerance(max_failure_ratio=slo_budget(descriptor.slo),
                             max_latency_p99_seconds=descriptor.slo.latency_p99_seconds,
                             min_requests=1, min_load_share=MIN_LOAD_SHARE)
    amount: dict[str, Any] = ({"count": kill.count} if kill.count is not None
                              else {"share": kill.share})
    action = KillAction(share=kill.share, count=kill.count, target="${shipyard_selector}")
    return {
        "version": "1.0.0",
        "title": f"{descriptor.name} survives: {action.describe()}",
        "description": (f"Shipyard's default chaos experiment for {descriptor.name}: the "
                        "steady state of its SLO through its Service, pods killed with no "
                        "grace period, the steady state again once the Service settled."),
        "tags": ["shipyard", "generated"],
        "configuration": {},
        "steady-state-hypothesis": {
            "title": f"{descriptor.name} serves within its SLO",
            "probes": [slo_probe("slo-through-the-service", tolerance)],
        },
        "method": [{
            "type": "action", "name": "kill-pods",
            "provider": _provider("kill_pods", {
                "namespace": "${shipyard_namespace}", "selector": "${shipyard_selector}",
                **amount, "seed": "${shipyard_seed}"}),
            # A pod deleted without grace keeps its address in kube-proxy's rules until the
            # EndpointSlice change reaches it (more than 2 s on a busy node): that is the
            # cluster converging, not the app's resilience, so the hypothesis waits it out.
            "pauses": {"after": "${shipyard_settle_seconds}"},
        }],
        "rollbacks": [],
    }


# -- what the gate runs from a repository --------------------------------------------------


def refusals(experiment: Mapping[str, Any], *, allowed: Collection[str] = (),
             environment: bool = False) -> list[str]:
    """What in ``experiment`` the gate will not run, each naming where it is; empty when
    it may run.

    An experiment needs a steady-state hypothesis with at least one probe: a gate that
    judges nothing proves nothing. Python activities and controls must come from
    :data:`ACTIVITIES_MODULE` or a module ``allowed`` names (``chaosk8s`` allows
    ``chaosk8s.pod.actions``); a ``process`` or ``http`` provider (a command or a request
    from the worker's host) only when ``allowed`` holds ``"process"`` or ``"http"``.
    Configuration and secrets may not read the worker's environment (``type: env``, or
    any other source) unless ``environment``: the gate hands an experiment its own keys.
    """
    problems = []
    hypothesis = experiment.get("steady-state-hypothesis")
    if not isinstance(hypothesis, Mapping) or not hypothesis.get("probes"):
        problems.append("steady-state-hypothesis: the gate needs one with at least one "
                        "probe, or it would pass whatever happened")
    modules = (ACTIVITIES_MODULE, *(a for a in allowed if a not in ("process", "http")))
    for where, provider in _providers(experiment):
        kind = provider.get("type")
        if kind == "python":
            module = str(provider.get("module", ""))
            if not any(module == m or module.startswith(f"{m}.") for m in modules):
                problems.append(f"{where}: module {module!r} is not an allowed activity "
                                f"module ({', '.join(modules)})")
            elif module == ACTIVITIES_MODULE and provider.get("func") not in ACTIVITIES:
                problems.append(f"{where}: {provider.get('func')!r} is not one of Shipyard's "
                                f"activities ({', '.join(sorted(ACTIVITIES))})")
        elif kind in ("process", "http"):
            if kind not in allowed:
                problems.append(f"{where}: a {kind} provider runs on the worker's host; "
                                f"the gate runs Python activities only")
        else:
            problems.append(f"{where}: provider type {kind!r} is not python")
    configuration = experiment.get("configuration")
    plain = ({k: v for k, v in configuration.items() if not isinstance(v, Mapping)}
             if isinstance(configuration, Mapping) else {})
    for where, seconds in _pauses(experiment):
        value = plain.get(seconds[2:-1], seconds) if isinstance(seconds, str) else seconds
        if not isinstance(value, int | float) or isinstance(value, bool) \
                or not 0 <= value <= MAX_SETTLE_SECONDS:
            problems.append(f"{where}: a pause of {value!r} s; the gate allows 0 to "
                            f"{MAX_SETTLE_SECONDS:g}")
    if not environment:
        for where, value in _sources(experiment):
            problems.append(f"{where}: reads {value.get('type')!r} "
                            f"{value.get('key', '')!r} of the worker; give it a value, or "
                            "use the gate's shipyard_* keys")
    return problems


def _providers(experiment: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every provider ``experiment`` would call, and where it is."""
    hypothesis = experiment.get("steady-state-hypothesis")
    probes = hypothesis.get("probes") if isinstance(hypothesis, Mapping) else None
    sections = [("steady-state-hypothesis.probes", probes),
                ("method", experiment.get("method")),
                ("rollbacks", experiment.get("rollbacks")),
                ("controls", experiment.get("controls"))]
    for section, activities in sections:
        for index, activity in enumerate(activities if isinstance(activities, list) else []):
            if not isinstance(activity, Mapping):
                continue
            where = f"{section}[{index}] ({activity.get('name') or activity.get('ref')})"
            yield from _activity_providers(where, activity)
    configuration = experiment.get("configuration")
    for key, value in (configuration.items() if isinstance(configuration, Mapping) else ()):
        if isinstance(value, Mapping) and value.get("type") in ("probe", "action"):
            yield from _activity_providers(f"configuration.{key}", value)


def _activity_providers(where: str,
                        activity: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    provider = activity.get("provider")
    if isinstance(provider, Mapping):
        yield where, provider
    tolerance = activity.get("tolerance")
    if isinstance(tolerance, Mapping) and isinstance(tolerance.get("provider"), Mapping):
        yield f"{where}.tolerance", tolerance["provider"]
    for index, control in enumerate(activity.get("controls") or []):
        if isinstance(control, Mapping) and isinstance(control.get("provider"), Mapping):
            yield f"{where}.controls[{index}]", control["provider"]


def _pauses(experiment: Mapping[str, Any]) -> Iterator[tuple[str, object]]:
    """Every pause before or after an activity of the method or the rollbacks."""
    for section in ("method", "rollbacks"):
        activities = experiment.get(section)
        for index, activity in enumerate(activities if isinstance(activities, list) else []):
            pauses = activity.get("pauses") if isinstance(activity, Mapping) else None
            for when, seconds in (pauses.items() if isinstance(pauses, Mapping) else ()):
                yield f"{section}[{index}] ({activity.get('name')}).pauses.{when}", seconds


def _sources(experiment: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Configuration and secret values read from somewhere other than the experiment."""
    configuration = experiment.get("configuration")
    for key, value in (configuration.items() if isinstance(configuration, Mapping) else ()):
        if isinstance(value, Mapping) and value.get("type") not in (None, "probe", "action"):
            yield f"configuration.{key}", value
    secrets = experiment.get("secrets")
    for scope, values in (secrets.items() if isinstance(secrets, Mapping) else ()):
        for key, value in (values.items() if isinstance(values, Mapping) else ()):
            if isinstance(value, Mapping) and "type" in value:
                yield f"secrets.{scope}.{key}", value


# -- the steady state through the Service --------------------------------------------------


def measurement_of(summary: TrafficSummary, *, seconds: float, rate_per_second: float,
                   timeout_seconds: float, url: str = "",
                   paths: Sequence[str] = ()) -> dict[str, Any]:
    """One window of load, as ``http_steady_state`` returns it: counts, the failure ratio
    and availability, latency quantiles of the answered requests.

    What was not measured counts as the worst: a window without a request has a failure
    ratio of 1 (silence proves nothing), one without an answer has the timeout as its
    latencies. So every value is a finite number, which Chaos Toolkit's ``range``
    tolerance needs (it cannot compare ``None``).
    """
    answered = sum(summary.versions.values())
    failure_ratio = summary.failure_ratio if summary.requests else 1.0

    def latency(value: float | None) -> float:
        return round(value if value is not None else timeout_seconds, 6)

    return {"url": url, "paths": list(paths), "seconds": seconds,
            "rate_per_second": rate_per_second,
            "expected_requests": round(rate_per_second * seconds, 3),
            "requests": summary.requests, "failures": summary.failures,
            "answered": answered, "failure_ratio": round(failure_ratio, 6),
            "availability": round(1.0 - failure_ratio, 6),
            "latency_p50": latency(summary.p50), "latency_p95": latency(summary.p95),
            "latency_p99": latency(summary.p99)}


@dataclass(frozen=True, slots=True)
class SloTolerance:
    """A window within an SLO: at most ``max_failure_ratio`` failed, a p99 of at most
    ``max_latency_p99_seconds``, and enough requests to judge: at least ``min_requests``
    and ``min_load_share`` of those the load was asked for (a starved load generator
    still counts; a window with next to no traffic proves nothing)."""

    max_failure_ratio: float
    max_latency_p99_seconds: float
    min_requests: int = 1
    min_load_share: float = 0.0

    def __post_init__(self) -> None:
        checks = {"max_failure_ratio": 0 <= self.max_failure_ratio <= 1,
                  "max_latency_p99_seconds": 0 < self.max_latency_p99_seconds < math.inf,
                  "min_requests": self.min_requests >= 0,
                  "min_load_share": 0 <= self.min_load_share <= 1}
        for name, good in checks.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not good:
                raise ValueError(f"within_slo: {name} {value!r} is out of range")

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> SloTolerance:
        """The tolerance of a ``within_slo`` provider's arguments (``value`` aside)."""
        try:
            return cls(max_failure_ratio=float(arguments["max_failure_ratio"]),
                       max_latency_p99_seconds=float(arguments["max_latency_p99_seconds"]),
                       min_requests=int(arguments.get("min_requests", 1)),
                       min_load_share=float(arguments.get("min_load_share", 0.0)))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"within_slo: arguments {dict(arguments)!r}: {err}") from err

    def to_arguments(self) -> dict[str, Any]:
        return {"max_failure_ratio": self.max_failure_ratio,
                "max_latency_p99_seconds": self.max_latency_p99_seconds,
                "min_requests": self.min_requests, "min_load_share": self.min_load_share}

    def judge(self, measurement: Mapping[str, Any]) -> tuple[ProbeResult, ...]:
        """Each rule against ``measurement`` (:func:`measurement_of`'s): ``requests``,
        ``failure-ratio``, ``latency-p99``. A value missing or not a number is never
        within tolerance."""
        expected = _number(measurement.get("expected_requests")) or 0.0
        least = max(self.min_requests, math.ceil(expected * self.min_load_share - 1e-9))
        nothing_answered = measurement.get("answered") == 0
        rules = (("requests", "requests", Tolerance.at_least(least), ""),
                 ("failure-ratio", "failure_ratio",
                  Tolerance.at_most(self.max_failure_ratio), ""),
                 ("latency-p99", "latency_p99", Tolerance.at_most(self.max_latency_p99_seconds),
                  "nothing answered: the timeout" if nothing_answered else ""))
        results = []
        for name, measure, tolerance, note in rules:
            value = _number(measurement.get(measure))
            met = tolerance.accepts(value) and not note
            results.append(ProbeResult(name, measure, value, tolerance, met, note))
        return tuple(results)

    def accepts(self, measurement: Mapping[str, Any] | None) -> bool:
        """Whether ``measurement`` keeps every rule."""
        return measurement is not None and all(r.met for r in self.judge(measurement))


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None when it is no number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
