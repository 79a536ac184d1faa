"""The app catalog: what an ``apps/<name>/app.yaml`` descriptor says, validated.

Parsing is pure: callers read the YAML and hand the mapping in. Errors name the file's field
and the fix, so a broken descriptor fails the stage that reads it with a useful message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["APP_NAME", "AppDescriptor", "CanaryMetric", "ChaosSettings", "InvalidDescriptor",
           "Resources",
           "Slo", "parse_descriptor", "validate_app_name"]

APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,38}[a-z0-9]")


class InvalidDescriptor(ValueError):
    """An ``app.yaml`` that cannot be used; the message names the field."""


METRIC_KINDS = ("error_rate", "latency", "rate", "query")
"""How a canary metric is computed. The first three from the standard series every app
exports (``<prefix>_http_requests_total``, ``<prefix>_http_request_duration_seconds``):
``error_rate``, the share of requests answered 5xx; ``latency``, a quantile of the request
duration in seconds; ``rate``, requests per second. ``query``: the metric's own PromQL
expression, which only the Prometheus metrics provider can answer."""
DIRECTIONS = ("increase", "decrease", "either")
"""Which change fails the canary (Kayenta's ``direction``): a rise, a fall, or either."""
QUANTITY = re.compile(r"\d+(\.\d+)?(m|k|Ki|Mi|Gi)?")


@dataclass(frozen=True, slots=True)
class CanaryMetric:
    """One metric the canary judge compares between baseline and canary."""

    name: str
    kind: str
    direction: str = "increase"
    quantile: float | None = None
    critical: bool = False
    group: str = "default"
    query: str | None = None
    """The PromQL of a ``query`` metric, with ``{{ track }}``, ``{{ namespace }}``,
    ``{{ app }}`` and ``{{ interval }}`` placeholders (:mod:`shipyard.domain.promql`)."""


@dataclass(frozen=True, slots=True)
class Slo:
    """What the chaos gate's steady-state hypothesis holds the app to."""

    availability: float = 0.99
    latency_p99_seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class ChaosSettings:
    """Whether the chaos gate runs for the app (opt-in, as Chaos Monkey's
    ``chaosMonkey.enabled``), on how many pods of the new version, and how many it kills."""

    enabled: bool = False
    replicas: int = 3
    kill: int = 1
    experiment: str | None = None
    """A Chaos Toolkit experiment file (JSON or YAML), relative to the app's folder, run
    instead of the generated default (kill ``kill`` pods, hold the SLO)."""


@dataclass(frozen=True, slots=True)
class Resources:
    """Kubernetes quantities for the app's container."""

    cpu_request: str = "50m"
    memory_request: str = "64Mi"
    cpu_limit: str = "500m"
    memory_limit: str = "256Mi"


@dataclass(frozen=True, slots=True)
class AppDescriptor:
    name: str
    port: int
    liveness_path: str
    readiness_path: str
    depends_on: tuple[str, ...]
    replicas: Mapping[str, int] = field(default_factory=dict)
    metrics_prefix: str = ""
    canary_metrics: tuple[CanaryMetric, ...] = ()
    load_paths: tuple[str, ...] = ()
    """GET paths that exercise the app (not its operational ones, which its metrics leave
    out): the canary's and the chaos experiment's load goes to these."""
    slo: Slo = field(default_factory=Slo)
    resources: Resources = field(default_factory=Resources)
    chaos: ChaosSettings = field(default_factory=ChaosSettings)


def validate_app_name(name: str) -> str:
    """Return ``name`` if it can name an app (a DNS label: lowercase letters, digits, '-')."""
    if not APP_NAME.fullmatch(name):
        raise ValueError(
            f"app name {name!r} must be 2-40 lowercase letters, digits or '-', "
            "starting with a letter (it becomes a Kubernetes name)"
        )
    return name


def parse_descriptor(raw: object, *, source: str) -> AppDescriptor:
    """Validate the mapping read from ``source`` (a path, for messages) into a descriptor."""
    if not isinstance(raw, Mapping):
        raise InvalidDescriptor(f"{source}: must be a mapping of fields, not {_kind(raw)}")
    name = _field(raw, "name", str, source)
    try:
        validate_app_name(name)
    except ValueError as err:
        raise InvalidDescriptor(f"{source}: name: {err}") from err
    port = _field(raw, "port", int, source)
    if not 1 <= port <= 65535:
        raise InvalidDescriptor(f"{source}: port: {port} is not a TCP port (1-65535)")
    health = _field(raw, "health", Mapping, source)
    paths = []
    for key in ("liveness", "readiness"):
        path = health.get(key)
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidDescriptor(f"{source}: health.{key}: must be a path starting with '/'")
        paths.append(path)
    depends_on = raw.get("depends_on", [])
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        raise InvalidDescriptor(f"{source}: depends_on: must be a list of app names")
    if name in depends_on:
        raise InvalidDescriptor(f"{source}: depends_on: an app cannot depend on itself")
    replicas = raw.get("replicas", {})
    if not isinstance(replicas, Mapping) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in replicas.items()
    ):
        raise InvalidDescriptor(
            f"{source}: replicas: must map environment names to replica counts (>= 0)")
    prefix = raw.get("metrics_prefix", name.replace("-", "_"))
    if not isinstance(prefix, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", prefix):
        raise InvalidDescriptor(f"{source}: metrics_prefix: must be a Prometheus name "
                                "(lowercase letters, digits, '_')")
    return AppDescriptor(name=name, port=port, liveness_path=paths[0], readiness_path=paths[1],
                         depends_on=tuple(depends_on), replicas=dict(replicas),
                         metrics_prefix=prefix,
                         canary_metrics=_canary_metrics(raw.get("canary", {}), source),
                         load_paths=_load_paths(raw.get("canary", {}), source),
                         slo=_slo(raw.get("slo", {}), source),
                         resources=_resources(raw.get("resources", {}), source),
                         chaos=_chaos(raw.get("chaos", {}), source))


def _canary_metrics(raw: object, source: str) -> tuple[CanaryMetric, ...]:
    if not isinstance(raw, Mapping):
        raise InvalidDescriptor(f"{source}: canary: must be a mapping with 'metrics'")
    entries = raw.get("metrics", [])
    if not isinstance(entries, list):
        raise InvalidDescriptor(f"{source}: canary.metrics: must be a list")
    metrics = []
    for index, entry in enumerate(entries):
        where = f"{source}: canary.metrics[{index}]"
        if not isinstance(entry, Mapping):
            raise InvalidDescriptor(f"{where}: must be a mapping")
        name, kind = entry.get("name"), entry.get("kind")
        if not isinstance(name, str) or not name:
            raise InvalidDescriptor(f"{where}.name: missing; name the metric")
        if kind not in METRIC_KINDS:
            raise InvalidDescriptor(f"{where}.kind: must be one of {', '.join(METRIC_KINDS)}")
        direction = entry.get("direction", "increase")
        if direction not in DIRECTIONS:
            raise InvalidDescriptor(f"{where}.direction: must be one of {', '.join(DIRECTIONS)}")
        quantile = entry.get("quantile")
        if kind == "latency":
            if not isinstance(quantile, float | int) or not 0 < quantile < 1:
                raise InvalidDescriptor(f"{where}.quantile: a latency metric needs a quantile "
                                        "between 0 and 1 (e.g. 0.95)")
            quantile = float(quantile)
        elif quantile is not None:
            raise InvalidDescriptor(f"{where}.quantile: only a latency metric has one")
        critical = entry.get("critical", False)
        group = entry.get("group", "default")
        if not isinstance(critical, bool) or not isinstance(group, str):
            raise InvalidDescriptor(f"{where}: critical must be true or false, group a name")
        query = entry.get("query")
        if kind == "query":
            if not isinstance(query, str) or not query.strip():
                raise InvalidDescriptor(
                    f"{where}.query: a query metric needs a PromQL expression, e.g. "
                    "'sum(rate(myapp_jobs_failed_total{track=\"{{ track }}\"}[{{ interval }}]))'")
            query = query.strip()
        elif query is not None:
            raise InvalidDescriptor(f"{where}.query: only a metric of kind query has one; "
                                    "set kind: query or remove it")
        metrics.append(CanaryMetric(name, kind, direction, quantile, critical, group, query))
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise InvalidDescriptor(f"{source}: canary.metrics: names must be unique")
    return tuple(metrics)


def _chaos(raw: object, source: str) -> ChaosSettings:
    if not isinstance(raw, Mapping):
        raise InvalidDescriptor(f"{source}: chaos: must be a mapping (enabled, replicas, kill, "
                                "experiment)")
    defaults = ChaosSettings()
    enabled = raw.get("enabled", defaults.enabled)
    replicas = raw.get("replicas", defaults.replicas)
    kill = raw.get("kill", defaults.kill)
    experiment = raw.get("experiment", defaults.experiment)
    if not isinstance(enabled, bool):
        raise InvalidDescriptor(f"{source}: chaos.enabled: must be true or false")
    if not isinstance(replicas, int) or not 1 <= replicas <= 20:
        raise InvalidDescriptor(f"{source}: chaos.replicas: must be a whole number 1-20")
    if not isinstance(kill, int) or not 1 <= kill <= replicas:
        raise InvalidDescriptor(f"{source}: chaos.kill: must be at least 1 and at most "
                                f"chaos.replicas ({replicas})")
    # A path inside the app's folder: the gate reads it from the release's commit there.
    if experiment is not None and not (
            isinstance(experiment, str) and not experiment.startswith("/")
            and "\\" not in experiment and experiment.endswith((".json", ".yaml", ".yml"))
            and all(part not in ("", ".", "..") for part in experiment.split("/"))):
        raise InvalidDescriptor(f"{source}: chaos.experiment: must be the path of a .json, "
                                ".yaml or .yml file inside the app's folder, relative to it "
                                "(e.g. chaos/latency.yaml), without '..'")
    return ChaosSettings(enabled, replicas, kill, experiment)


def _load_paths(raw: object, source: str) -> tuple[str, ...]:
    paths = raw.get("load_paths", []) if isinstance(raw, Mapping) else []
    if not isinstance(paths, list) or not all(
            isinstance(p, str) and p.startswith("/") and " " not in p for p in paths):
        raise InvalidDescriptor(f"{source}: canary.load_paths: must be a list of paths "
                                "starting with '/', e.g. ['/eureka/apps']")
    return tuple(paths)


def _slo(raw: object, source: str) -> Slo:
    if not isinstance(raw, Mapping):
        raise InvalidDescriptor(f"{source}: slo: must be a mapping")
    defaults = Slo()
    availability = raw.get("availability", defaults.availability)
    latency = raw.get("latency_p99_seconds", defaults.latency_p99_seconds)
    if not isinstance(availability, float | int) or not 0 < availability <= 1:
        raise InvalidDescriptor(f"{source}: slo.availability: a share of successful requests "
                                "in (0, 1], e.g. 0.995")
    if not isinstance(latency, float | int) or not latency > 0:
        raise InvalidDescriptor(f"{source}: slo.latency_p99_seconds: must be a positive "
                                "number of seconds")
    return Slo(float(availability), float(latency))


def _resources(raw: object, source: str) -> Resources:
    if not isinstance(raw, Mapping):
        raise InvalidDescriptor(f"{source}: resources: must be a mapping")
    defaults = Resources()
    values = {}
    for section in ("requests", "limits"):
        given = raw.get(section, {})
        if not isinstance(given, Mapping):
            raise InvalidDescriptor(f"{source}: resources.{section}: must be a mapping")
        for resource in ("cpu", "memory"):
            key = f"{resource}_{section[:-1]}"
            value = given.get(resource, getattr(defaults, key))
            if not isinstance(value, str) or not QUANTITY.fullmatch(value):
                raise InvalidDescriptor(f"{source}: resources.{section}.{resource}: must be a "
                                        "Kubernetes quantity in quotes, e.g. '100m' or '128Mi'")
            values[key] = value
    return Resources(**values)


def _field(raw: Mapping[str, Any], key: str, kind: type, source: str) -> Any:
    if key not in raw:
        raise InvalidDescriptor(f"{source}: {key}: missing; add it to the descriptor")
    value = raw[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidDescriptor(
            f"{source}: {key}: must be {kind.__name__.lower()}, not {_kind(value)}")
    return value


def _kind(value: object) -> str:
    return type(value).__name__
