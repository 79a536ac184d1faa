"""Error answers: JSON with a detail, the right status, and the worker still serving."""

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field
from servicekit.app import build_service
from servicekit.testing import config_for_tests


class Order(BaseModel):
    quantity: int = Field(ge=1)


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = build_service("orders", config_for_tests())

    @app.post("/orders")
    def place(order: Order) -> dict[str, int]:
        return {"quantity": order.quantity}

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("database on fire")

    @app.get("/fine")
    def fine() -> dict[str, str]:
        return {}

    with TestClient(app) as client:
        yield client


def test_malformed_json_answers_400_saying_so(client: TestClient) -> None:
    response = client.post("/orders", content=b'{"quantity": ',
                           headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("request body is not valid JSON")


def test_invalid_input_answers_422_naming_the_field(client: TestClient) -> None:
    response = client.post("/orders", json={"quantity": 0})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body.quantity: ")


def test_an_unhandled_error_answers_500_json_with_the_request_id(client: TestClient) -> None:
    response = client.get("/crash", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.json()["request_id"] == "req-500"
    assert "req-500" in response.json()["detail"]


def test_an_unhandled_error_is_logged_with_its_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="servicekit.errors"):
        client.get("/crash")
    [record] = caplog.records
    assert record.exc_info is not None and "database on fire" in str(record.exc_info[1])


def test_the_service_keeps_serving_after_an_unhandled_error(client: TestClient) -> None:
    client.get("/crash")
    assert client.get("/fine").status_code == 200


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nowhere", 404),
                                                        ("DELETE", "/orders", 405)])
def test_routing_errors_are_json_with_a_detail(client: TestClient, method: str, path: str,
                                               status: int) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert response.json()["detail"]
