"""The HTTP API end to end through TestClient against the real app."""

from collections.abc import Iterator

import pytest
from discovery.api import create_app
from fastapi.testclient import TestClient
from servicekit.testing import config_for_tests

VERSION = "1.4.2"

ORDERS_1 = {"instance_id": "orders-1", "host": "10.0.0.1", "port": 8080, "status": "UP"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(config_for_tests(APP_VERSION=VERSION), clock=lambda: 0.0)
    with TestClient(app) as client:
        yield client


def test_registered_instance_can_be_fetched_by_app(client: TestClient) -> None:
    assert client.post("/eureka/apps/orders", json=ORDERS_1).status_code == 201
    body = client.get("/eureka/apps/orders").json()
    assert [(i["instance_id"], i["port"]) for i in body["instances"]] == [("orders-1", 8080)]


def test_heartbeat_of_a_registered_instance_succeeds(client: TestClient) -> None:
    client.post("/eureka/apps/orders", json=ORDERS_1)
    assert client.put("/eureka/apps/orders/orders-1").status_code == 200


def test_cancelled_instance_disappears_from_the_registry(client: TestClient) -> None:
    client.post("/eureka/apps/orders", json=ORDERS_1)
    assert client.delete("/eureka/apps/orders/orders-1").status_code == 204
    assert client.get("/eureka/apps").json()["apps"] == {}


def test_heartbeat_of_an_unknown_instance_answers_404_asking_to_register(
    client: TestClient,
) -> None:
    response = client.put("/eureka/apps/orders/orders-9")
    assert response.status_code == 404
    assert "re-register" in response.json()["detail"]


def test_out_of_range_port_answers_422_naming_the_field(client: TestClient) -> None:
    response = client.post("/eureka/apps/orders", json={**ORDERS_1, "port": 70000})
    assert response.status_code == 422
    assert "body.port" in response.json()["detail"]


def test_invalid_app_name_answers_422_naming_the_path_parameter(client: TestClient) -> None:
    response = client.post("/eureka/apps/Orders_Svc", json=ORDERS_1)
    assert response.status_code == 422
    assert "path.app_name" in response.json()["detail"]


def test_malformed_json_answers_400_saying_so(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    response = client.post("/eureka/apps/orders", content=b"{not json", headers=headers)
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]


def test_body_over_64_kib_answers_413(client: TestClient) -> None:
    response = client.post("/eureka/apps/orders", content=b"x" * (64 * 1024 + 1))
    assert response.status_code == 413


def test_chunked_body_over_64_kib_answers_413(client: TestClient) -> None:
    chunks = iter([b"x" * 40 * 1024, b"x" * 40 * 1024])  # no Content-Length header
    assert client.post("/eureka/apps/orders", content=chunks).status_code == 413


def test_delta_returns_changes_after_the_given_version(client: TestClient) -> None:
    client.post("/eureka/apps/orders", json=ORDERS_1)
    client.post("/eureka/apps/orders", json={**ORDERS_1, "instance_id": "orders-2"})
    body = client.get("/eureka/apps/delta", params={"since": 1}).json()
    assert [c["instance"]["instance_id"] for c in body["changes"]] == ["orders-2"]


def test_readiness_is_true_only_while_the_app_is_running() -> None:
    client = TestClient(create_app(config_for_tests()))
    with client:
        assert client.get("/readyz").status_code == 200
    assert client.get("/readyz").status_code == 503


def test_version_endpoint_reports_the_app_version_from_the_environment(
    client: TestClient,
) -> None:
    assert client.get("/version").json() == {"app": "discovery", "version": VERSION}


def test_metrics_count_requests_by_route_template_with_version_label(client: TestClient) -> None:
    client.put("/eureka/apps/orders/orders-9")
    text = client.get("/metrics").text
    expected = (
        'discovery_http_requests_total{method="PUT",route="/eureka/apps/{app_name}/{instance_id}",'
        f'status="404",version="{VERSION}"}} 1.0'
    )
    assert expected in text


def test_metrics_report_the_number_of_registered_instances(client: TestClient) -> None:
    client.post("/eureka/apps/orders", json=ORDERS_1)
    text = client.get("/metrics").text
    assert f'discovery_registered_instances{{version="{VERSION}"}} 1.0' in text
