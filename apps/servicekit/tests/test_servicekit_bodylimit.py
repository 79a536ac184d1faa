"""The body size limit counts what arrives, declared or not."""

from collections.abc import Iterator

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from servicekit.app import build_service
from servicekit.bodylimit import BodyLimitMiddleware
from servicekit.testing import config_for_tests


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = build_service("orders", config_for_tests(MAX_BODY_BYTES="1024"))

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    with TestClient(app) as client:
        yield client


def test_a_body_at_the_limit_reaches_the_handler_whole(client: TestClient) -> None:
    assert client.post("/echo", content=b"x" * 1024).json() == {"received": 1024}


def test_a_declared_body_over_the_limit_answers_413(client: TestClient) -> None:
    response = client.post("/echo", content=b"x" * 1025)
    assert response.status_code == 413
    assert "1024 bytes" in response.json()["detail"]


def test_a_chunked_body_over_the_limit_answers_413(client: TestClient) -> None:
    chunks = iter([b"x" * 600, b"x" * 600])  # no Content-Length header
    assert client.post("/echo", content=chunks).status_code == 413


def test_a_chunked_body_within_the_limit_reaches_the_handler(client: TestClient) -> None:
    chunks = iter([b"x" * 500, b"x" * 500])
    assert client.post("/echo", content=chunks).json() == {"received": 1000}


def test_a_malformed_content_length_answers_400(client: TestClient) -> None:
    response = client.post("/echo", content=b"x", headers={"content-length": "1; drop"})
    assert response.status_code == 400


def test_a_limit_below_one_byte_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        BodyLimitMiddleware(lambda s, r, se: None, max_bytes=0)  # type: ignore[arg-type,return-value]
