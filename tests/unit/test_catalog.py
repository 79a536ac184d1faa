"""The app catalog: descriptors validated field by field, and one deploy stage per app."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.domain.catalog import (
    AppDescriptor,
    CanaryMetric,
    InvalidDescriptor,
    Resources,
    Slo,
    parse_descriptor,
    validate_app_name,
)

SOURCE = "apps/gateway/app.yaml"


def descriptor(**overrides: Any) -> dict[str, Any]:
    """A valid descriptor mapping, as ``yaml.safe_load`` returns it, with ``overrides``."""
    raw: dict[str, Any] = {
        "name": "gateway",
        "port": 8080,
        "health": {"liveness": "/healthz", "readiness": "/readyz"},
        "depends_on": ["discovery"],
        "replicas": {"staging": 1, "prod": 3},
    }
    raw.update(overrides)
    return raw


def app(name: str, *depends_on: str) -> AppDescriptor:
    return AppDescriptor(name=name, port=80, liveness_path="/", readiness_path="/",
                         depends_on=depends_on)


# -- app names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ab", "gateway", "api-v2", "a1", "a" * 40])
def test_a_dns_label_is_a_valid_app_name(name: str) -> None:
    assert validate_app_name(name) == name


@pytest.mark.parametrize("name", ["", "a", "a" * 41, "Gateway", "1api", "-api", "api-",
                                  "api_v2", "api.v2", "api v2", "gateway\n"])
def test_a_name_that_cannot_be_a_kubernetes_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="must be 2-40 lowercase letters") as raised:
        validate_app_name(name)
    assert repr(name) in str(raised.value)


# -- descriptors --------------------------------------------------------------------------


def test_a_complete_descriptor_is_parsed() -> None:
    assert parse_descriptor(descriptor(), source=SOURCE) == AppDescriptor(
        name="gateway", port=8080, liveness_path="/healthz", readiness_path="/readyz",
        depends_on=("discovery",), replicas={"staging": 1, "prod": 3},
        metrics_prefix="gateway",
    )


def test_depends_on_and_replicas_are_optional() -> None:
    raw = descriptor()
    del raw["depends_on"], raw["replicas"]

    parsed = parse_descriptor(raw, source=SOURCE)

    assert (parsed.depends_on, dict(parsed.replicas)) == ((), {})


def test_zero_replicas_is_allowed() -> None:
    assert parse_descriptor(descriptor(replicas={"dev": 0}), source=SOURCE).replicas == {
        "dev": 0}


@pytest.mark.parametrize("raw", [None, [], "name: gateway", 3])
def test_a_descriptor_that_is_not_a_mapping_is_refused(raw: object) -> None:
    with pytest.raises(InvalidDescriptor,
                       match=f"^{SOURCE}: must be a mapping of fields, not {type(raw).__name__}$"):
        parse_descriptor(raw, source=SOURCE)


@pytest.mark.parametrize("field", ["name", "port", "health"])
def test_a_missing_required_field_is_named_with_the_fix(field: str) -> None:
    raw = descriptor()
    del raw[field]
    with pytest.raises(InvalidDescriptor) as raised:
        parse_descriptor(raw, source=SOURCE)
    assert str(raised.value) == f"{SOURCE}: {field}: missing; add it to the descriptor"


# Each row: the field's bad value and the start of the message that must name it.
BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"name": 42}, "name: must be str, not int"),
    ({"name": "Gateway"}, "name: app name 'Gateway' must be 2-40"),
    ({"port": "8080"}, "port: must be int, not str"),
    ({"port": True}, "port: must be int, not bool"),
    ({"port": 8080.0}, "port: must be int, not float"),
    ({"port": 0}, "port: 0 is not a TCP port (1-65535)"),
    ({"port": 65536}, "port: 65536 is not a TCP port"),
    ({"health": ["/healthz"]}, "health: must be mapping, not list"),
    ({"health": {"readiness": "/readyz"}}, "health.liveness: must be a path starting with '/'"),
    ({"health": {"liveness": "/healthz", "readiness": "readyz"}},
     "health.readiness: must be a path starting with '/'"),
    ({"health": {"liveness": 200, "readiness": "/"}}, "health.liveness: must be a path"),
    ({"depends_on": "discovery"}, "depends_on: must be a list of app names"),
    ({"depends_on": [1]}, "depends_on: must be a list of app names"),
    ({"depends_on": ["discovery", "gateway"]}, "depends_on: an app cannot depend on itself"),
    ({"replicas": [1, 2]}, "replicas: must map environment names to replica counts"),
    ({"replicas": {"prod": -1}}, "replicas: must map environment names"),
    ({"replicas": {"prod": "3"}}, "replicas: must map environment names"),
    ({"replicas": {"prod": 1.5}}, "replicas: must map environment names"),
    # YAML 1.1 reads `prod: yes` as True, which is an int to Python but no replica count.
    ({"replicas": {"prod": True}}, "replicas: must map environment names"),
    ({"replicas": {1: 3}}, "replicas: must map environment names"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_FIELDS,
                         ids=[m.split(":")[0] + "-" + str(i) for i, (_, m) in
                              enumerate(BAD_FIELDS)])
def test_a_bad_field_is_refused_with_a_message_naming_the_file_and_field(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidDescriptor) as raised:
        parse_descriptor(descriptor(**overrides), source=SOURCE)
    assert str(raised.value).startswith(f"{SOURCE}: {message}")


def test_invalid_descriptor_is_a_value_error() -> None:
    assert issubclass(InvalidDescriptor, ValueError)


# -- what the gates use: canary metrics, SLOs, resources -------------------------------------


def test_canary_metrics_slos_and_resources_are_parsed() -> None:
    parsed = parse_descriptor(descriptor(
        metrics_prefix="edge",
        canary={"metrics": [
            {"name": "errors", "kind": "error_rate", "critical": True},
            {"name": "p95", "kind": "latency", "quantile": 0.95, "group": "latency"},
            {"name": "throughput", "kind": "rate", "direction": "decrease"},
        ]},
        slo={"availability": 0.995, "latency_p99_seconds": 0.3},
        resources={"requests": {"cpu": "100m"}, "limits": {"memory": "512Mi"}},
    ), source=SOURCE)

    assert parsed.metrics_prefix == "edge"
    assert parsed.canary_metrics == (
        CanaryMetric("errors", "error_rate", "increase", None, True, "default"),
        CanaryMetric("p95", "latency", "increase", 0.95, False, "latency"),
        CanaryMetric("throughput", "rate", "decrease", None, False, "default"),
    )
    assert parsed.slo == Slo(0.995, 0.3)
    assert parsed.resources == Resources(cpu_request="100m", memory_request="64Mi",
                                         cpu_limit="500m", memory_limit="512Mi")


def test_the_metrics_prefix_defaults_to_the_name_in_prometheus_spelling() -> None:
    assert parse_descriptor(descriptor(name="data-api"), source=SOURCE).metrics_prefix == \
        "data_api"


@pytest.mark.parametrize(("overrides", "field"), [
    ({"canary": {"metrics": [{"name": "x", "kind": "p99"}]}}, "canary.metrics[0].kind"),
    ({"canary": {"metrics": [{"kind": "rate"}]}}, "canary.metrics[0].name"),
    ({"canary": {"metrics": [{"name": "x", "kind": "latency"}]}},
     "canary.metrics[0].quantile"),
    ({"canary": {"metrics": [{"name": "x", "kind": "latency", "quantile": 1.5}]}},
     "canary.metrics[0].quantile"),
    ({"canary": {"metrics": [{"name": "x", "kind": "rate", "quantile": 0.5}]}},
     "canary.metrics[0].quantile"),
    ({"canary": {"metrics": [{"name": "x", "kind": "rate", "direction": "up"}]}},
     "canary.metrics[0].direction"),
    ({"canary": {"metrics": [{"name": "x", "kind": "rate"}, {"name": "x", "kind": "rate"}]}},
     "names must be unique"),
    ({"slo": {"availability": 99.5}}, "slo.availability"),
    ({"slo": {"latency_p99_seconds": 0}}, "slo.latency_p99_seconds"),
    ({"resources": {"limits": {"memory": 256}}}, "resources.limits.memory"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "resources.requests.cpu"),
    ({"metrics_prefix": "Edge-1"}, "metrics_prefix"),
])
def test_a_bad_gate_field_is_refused_naming_it(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidDescriptor, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_descriptor(descriptor(**overrides), source=SOURCE)
