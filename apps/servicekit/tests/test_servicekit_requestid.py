"""Request ids: accepted or made up, echoed, and visible to handlers and outgoing calls."""

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from servicekit.app import build_service
from servicekit.httpclient import make_http_client
from servicekit.requestid import accept_request_id, current_request_id
from servicekit.testing import config_for_tests


def test_a_valid_offered_id_is_kept() -> None:
    assert accept_request_id("abc-123.x:y_z") == "abc-123.x:y_z"


@pytest.mark.parametrize("offered", [None, "", "has space", "new\nline", "x" * 129])
def test_an_invalid_or_missing_id_is_replaced_by_a_random_one(offered: str | None) -> None:
    made = accept_request_id(offered)
    assert made != offered and len(made) == 32 and made.isalnum()


def test_no_request_id_outside_a_request() -> None:
    assert current_request_id() is None


@pytest.fixture
def upstream_headers() -> list[str | None]:
    """The X-Request-ID of each call the app made upstream."""
    return []


@pytest.fixture
def client(upstream_headers: list[str | None]) -> Iterator[TestClient]:
    app = build_service("orders", config_for_tests())

    def upstream(request: httpx.Request) -> httpx.Response:
        upstream_headers.append(request.headers.get("x-request-id"))
        return httpx.Response(200)

    @app.get("/whoami")
    def whoami() -> dict[str, str | None]:
        return {"request_id": current_request_id()}

    @app.get("/call-upstream")
    async def call_upstream() -> dict[str, str]:
        async with make_http_client(transport=httpx.MockTransport(upstream)) as http:
            await http.get("http://stock/items")
        return {}

    with TestClient(app) as client:
        yield client


def test_the_response_carries_the_offered_id(client: TestClient) -> None:
    response = client.get("/whoami", headers={"X-Request-ID": "req-42"})
    assert response.headers["x-request-id"] == "req-42"


def test_a_handler_sees_the_id_the_response_carries(client: TestClient) -> None:
    response = client.get("/whoami")
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_error_answers_carry_an_id_too(client: TestClient) -> None:
    assert len(client.get("/no-such-route").headers["x-request-id"]) == 32


def test_outgoing_calls_carry_the_id_of_the_request_being_served(
    client: TestClient, upstream_headers: list[str | None]
) -> None:
    client.get("/call-upstream", headers={"X-Request-ID": "req-7"})
    assert upstream_headers == ["req-7"]
