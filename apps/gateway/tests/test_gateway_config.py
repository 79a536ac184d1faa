"""GATEWAY_* settings and the weights file, from plain mappings and temporary files."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from gateway.breaker import BreakerPolicy
from gateway.config import GatewaySettings, WeightsSource, parse_weights


def test_the_defaults_need_no_variable() -> None:
    settings = GatewaySettings.from_env({})
    assert (settings.balancer, settings.retries, settings.timeout_seconds) == (
        "least-outstanding", 1, 10.0)
    assert settings.breaker == BreakerPolicy()
    assert settings.weights == {}
    assert settings.config_file is None


def test_every_variable_is_read() -> None:
    settings = GatewaySettings.from_env({
        "GATEWAY_BALANCER": "round-robin", "GATEWAY_CONNECT_TIMEOUT_SECONDS": "0.5",
        "GATEWAY_TIMEOUT_SECONDS": "3", "GATEWAY_RETRIES": "0",
        "GATEWAY_MAX_CONNECTIONS": "10", "GATEWAY_MAX_RESPONSE_BYTES": "1000",
        "GATEWAY_BREAKER_FAILURES": "2", "GATEWAY_BREAKER_FAILURE_RATIO": "0.25",
        "GATEWAY_BREAKER_WINDOW": "8", "GATEWAY_BREAKER_COOLDOWN_SECONDS": "4",
        "GATEWAY_WEIGHTS": '{"data": {"1.2.0": 90, "1.3.0": 10}}',
        "GATEWAY_CONFIG_FILE": "/etc/gateway/routing.json",
    })
    assert settings == GatewaySettings(
        balancer="round-robin", connect_timeout_seconds=0.5, timeout_seconds=3.0, retries=0,
        max_connections=10, max_response_bytes=1000,
        breaker=BreakerPolicy(consecutive_failures=2, failure_ratio=0.25, window=8,
                              cooldown_seconds=4.0),
        weights={"data": {"1.2.0": 90, "1.3.0": 10}},
        config_file=Path("/etc/gateway/routing.json"))


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("GATEWAY_BALANCER", "random", "one of least-outstanding, round-robin"),
    ("GATEWAY_RETRIES", "-1", "whole number of at least 0"),
    ("GATEWAY_TIMEOUT_SECONDS", "0", "greater than 0"),
    ("GATEWAY_BREAKER_FAILURE_RATIO", "0", "above 0"),
    ("GATEWAY_BREAKER_FAILURE_RATIO", "1.5", "between 0 and 1"),
    ("GATEWAY_WEIGHTS", "{nope", "not valid JSON"),
    ("GATEWAY_WEIGHTS", '{"data": {"1.2.0": -1}}', "data.1.2.0"),
    ("GATEWAY_WEIGHTS", '{"data": {"1.2.0": "90"}}', "valid integer"),
    ("GATEWAY_WEIGHTS", '{"Data_Svc": {"1.2.0": 1}}', "Data_Svc"),
    ("GATEWAY_WEIGHTS", '[1, 2]', "must map app names"),
])
def test_a_bad_value_is_refused_naming_the_variable(variable: str, value: str,
                                                    message: str) -> None:
    with pytest.raises(ValueError, match=variable) as raised:
        GatewaySettings.from_env({variable: value})
    assert message in str(raised.value)


def test_weights_are_read_only() -> None:
    weights = parse_weights({"data": {"1.2.0": 1}}, "test")
    with pytest.raises(TypeError):
        weights["data"]["1.2.0"] = 2  # type: ignore[index]


# -- the weights file ---------------------------------------------------------------------

BASE = parse_weights({"data": {"1.2.0": 1}}, "GATEWAY_WEIGHTS")


def write(path: Path, weights: object) -> None:
    """Replace the file the way a ConfigMap update does: a new inode swapped in."""
    staged = path.with_suffix(".new")
    staged.write_text(json.dumps(weights))
    os.replace(staged, path)


def test_without_a_file_the_environments_weights_apply(tmp_path: Path) -> None:
    assert WeightsSource(BASE).current() == BASE
    assert WeightsSource(BASE, tmp_path / "absent.json").current() == BASE


def test_the_file_replaces_the_environments_weights(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    write(path, {"weights": {"data": {"1.3.0": 1}}})
    assert WeightsSource(BASE, path).current() == {"data": {"1.3.0": 1}}


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    write(path, {"weights": {"data": {"1.3.0": 1}}})
    source = WeightsSource(BASE, path)
    source.current()
    write(path, {"weights": {"data": {"1.3.0": 0, "1.4.0": 5}}})
    assert source.current() == {"data": {"1.3.0": 0, "1.4.0": 5}}
    path.unlink()
    assert source.current() == BASE


def test_an_invalid_file_keeps_the_last_good_weights(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "routing.json"
    write(path, {"weights": {"data": {"1.3.0": 1}}})
    source = WeightsSource(BASE, path)
    source.current()
    with caplog.at_level(logging.ERROR, logger="gateway.config"):
        write(path, {"weights": {"data": {"1.3.0": "lots"}}, "extra": 1})
        assert source.current() == {"data": {"1.3.0": 1}}
    assert "routing file ignored" in caplog.text
