"""Fault injection: the file format, reloading on change, the draw, and the middleware."""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from servicekit.app import build_service
from servicekit.config import FaultConfig
from servicekit.faults import FaultSource, parse_fault_file, plan_faults
from servicekit.testing import config_for_tests


class Script:
    """A random source that returns the given draws in order."""

    def __init__(self, *draws: float) -> None:
        self.draws = list(draws)

    def __call__(self) -> float:
        return self.draws.pop(0)


class Sleeps:
    """An async sleep that records what it was asked to wait, and returns at once."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def test_key_value_file_with_comments_is_parsed() -> None:
    text = "# canary test\nFAULT_ERROR_RATE = 0.5\n\nFAULT_READINESS_FAIL=true\n"
    assert parse_fault_file(text) == {"FAULT_ERROR_RATE": "0.5", "FAULT_READINESS_FAIL": "true"}


def test_json_file_values_become_env_words() -> None:
    text = '{"FAULT_LATENCY_MS": 250, "FAULT_READINESS_FAIL": true}'
    assert parse_fault_file(text) == {"FAULT_LATENCY_MS": "250", "FAULT_READINESS_FAIL": "true"}


def test_unknown_keys_are_refused_with_the_known_ones_listed() -> None:
    with pytest.raises(ValueError, match=r"FAULT_EROR_RATE.*known keys are FAULT_ERROR_RATE"):
        parse_fault_file("FAULT_EROR_RATE=1")


def test_a_line_without_equals_is_refused_by_number() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_fault_file("FAULT_ERROR_RATE=1\nnonsense\n")


def write(path: Path, text: str, mtime_ns: int) -> None:
    # Explicit mtimes: a rewrite within one filesystem timestamp tick must still be seen.
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_file_keys_override_the_environment_and_absent_keys_keep_it(tmp_path: Path) -> None:
    path = tmp_path / "faults.env"
    write(path, "FAULT_ERROR_RATE=1\n", 1_000_000_000)
    source = FaultSource(FaultConfig(error_rate=0.1, latency_ms=20), path)
    assert source.current() == FaultConfig(error_rate=1.0, latency_ms=20)


def test_a_changed_file_applies_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "faults.env"
    write(path, "FAULT_ERROR_RATE=1\n", 1_000_000_000)
    source = FaultSource(FaultConfig(), path)
    assert source.current().error_rate == 1.0
    write(path, "FAULT_ERROR_RATE=0\n", 2_000_000_000)
    assert source.current().error_rate == 0.0


def test_a_missing_file_means_the_environment_alone(tmp_path: Path) -> None:
    source = FaultSource(FaultConfig(latency_ms=5), tmp_path / "absent.env")
    assert source.current() == FaultConfig(latency_ms=5)


def test_a_removed_file_drops_its_overrides(tmp_path: Path) -> None:
    path = tmp_path / "faults.env"
    write(path, "FAULT_READINESS_FAIL=true\n", 1_000_000_000)
    source = FaultSource(FaultConfig(), path)
    assert source.current().readiness_fail
    path.unlink()
    assert not source.current().readiness_fail


def test_an_invalid_file_keeps_the_last_good_settings(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "faults.env"
    write(path, "FAULT_ERROR_RATE=0.5\n", 1_000_000_000)
    source = FaultSource(FaultConfig(), path)
    source.current()
    write(path, "FAULT_ERROR_RATE=5\n", 2_000_000_000)
    assert source.current().error_rate == 0.5
    assert "FAULT_ERROR_RATE='5' is invalid" in caplog.text


def test_a_draw_below_the_error_rate_fails_the_request() -> None:
    assert plan_faults(FaultConfig(error_rate=0.3), Script(0.29)).fail


def test_a_draw_at_the_error_rate_lets_the_request_through() -> None:
    assert not plan_faults(FaultConfig(error_rate=0.3), Script(0.3)).fail


def test_latency_adds_the_drawn_share_of_the_jitter() -> None:
    config = FaultConfig(latency_ms=100, latency_jitter_ms=50)
    assert plan_faults(config, Script(0.5)).delay_seconds == pytest.approx(0.125)


@dataclass
class FaultyService:
    client: TestClient
    sleeps: Sleeps


@pytest.fixture
def faulty() -> Iterator[FaultyService]:
    """Every application request fails (error rate 1) after 200 ms of injected latency."""
    config = config_for_tests(FAULT_ERROR_RATE="1", FAULT_LATENCY_MS="200")
    sleeps = Sleeps()
    app = build_service("orders", config, fault_random=Script(*[0.0] * 10), fault_sleep=sleeps)

    @app.get("/orders")
    def orders() -> dict[str, str]:
        return {"orders": "none"}

    with TestClient(app) as client:
        yield FaultyService(client, sleeps)


def test_an_injected_error_answers_500_saying_it_was_injected(faulty: FaultyService) -> None:
    response = faulty.client.get("/orders")
    assert response.status_code == 500
    assert "injected fault" in response.json()["detail"]


def test_injected_latency_waits_before_answering(faulty: FaultyService) -> None:
    faulty.client.get("/orders")
    assert faulty.sleeps.seconds == [0.2]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/version"])
def test_operational_routes_are_never_slowed_or_failed(faulty: FaultyService,
                                                       path: str) -> None:
    assert faulty.client.get(path).status_code == 200
    assert faulty.sleeps.seconds == []


def test_injected_faults_are_counted_by_kind(faulty: FaultyService) -> None:
    faulty.client.get("/orders")
    text = faulty.client.get("/metrics").text
    assert 'orders_faults_injected_total{kind="error",version="dev"} 1.0' in text
    assert 'orders_faults_injected_total{kind="latency",version="dev"} 1.0' in text


def test_injected_errors_count_as_5xx_of_the_route(faulty: FaultyService) -> None:
    faulty.client.get("/orders")
    text = faulty.client.get("/metrics").text
    assert ('orders_http_requests_total{method="GET",route="/orders",status="500",'
            'version="dev"} 1.0') in text


def test_readiness_fault_answers_503_naming_it() -> None:
    app = build_service("orders", config_for_tests(FAULT_READINESS_FAIL="true"))
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "fault-injection" in response.json()["failed"]


def test_a_fault_file_turns_faults_on_in_a_running_app(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    app = build_service("orders", config_for_tests(FAULT_CONFIG_FILE=str(path)))

    @app.get("/orders")
    def orders() -> dict[str, str]:
        return {}

    with TestClient(app) as client:
        assert client.get("/orders").status_code == 200
        write(path, '{"FAULT_ERROR_RATE": 1}', 1_000_000_000)
        assert client.get("/orders").status_code == 500
