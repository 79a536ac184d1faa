"""build_service: the operational routes, readiness and the lifespans' order."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from servicekit.app import Lifespan, build_service, service_state
from servicekit.lifecycle import ReadinessCheck
from servicekit.testing import config_for_tests


def test_version_names_the_app_and_the_build() -> None:
    with TestClient(build_service("orders", config_for_tests(APP_VERSION="1.4.2"))) as client:
        assert client.get("/version").json() == {"app": "orders", "version": "1.4.2"}


def test_liveness_answers_ok() -> None:
    with TestClient(build_service("orders", config_for_tests())) as client:
        assert client.get("/healthz").json() == {"status": "ok"}


def test_readiness_is_true_only_while_the_app_runs() -> None:
    client = TestClient(build_service("orders", config_for_tests()))
    assert client.get("/readyz").json()["failed"] == {"startup": "startup has not completed"}
    with client:
        assert client.get("/readyz").json() == {"ready": True, "detail": "ready"}
    assert client.get("/readyz").status_code == 503


def test_a_failing_check_makes_readiness_503_naming_it() -> None:
    up = {"stock": False}
    check = ReadinessCheck("stock", lambda: up["stock"])
    with TestClient(build_service("orders", config_for_tests(),
                                  readiness_checks=[check])) as client:
        response = client.get("/readyz")
        assert (response.status_code, response.json()["failed"]) == (
            503, {"stock": "check returned false"})
        up["stock"] = True
        assert client.get("/readyz").status_code == 200


def test_draining_makes_readiness_503() -> None:
    app = build_service("orders", config_for_tests())
    with TestClient(app) as client:
        asyncio.run(service_state(app).begin_drain())
        assert "draining" in client.get("/readyz").json()["failed"]


def test_the_service_name_must_be_a_dns_label() -> None:
    with pytest.raises(ValueError, match="Orders_Svc"):
        build_service("Orders_Svc", config_for_tests())


def recording(name: str, log: list[str]) -> Lifespan:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.append(f"{name} up, ready={service_state(app).started}")
        yield
        log.append(f"{name} down, ready={service_state(app).started}")

    return lifespan


def test_lifespans_start_in_order_before_ready_and_stop_in_reverse_after() -> None:
    log: list[str] = []
    app = build_service("orders", config_for_tests(),
                        lifespans=[recording("db", log), recording("cache", log)])
    with TestClient(app):
        pass
    assert log == ["db up, ready=False", "cache up, ready=False",
                   "cache down, ready=False", "db down, ready=False"]


def test_service_state_refuses_an_app_built_otherwise() -> None:
    with pytest.raises(TypeError, match="build_service"):
        service_state(FastAPI())


