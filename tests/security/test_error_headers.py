"""An unhandled error is answered outside every middleware (Starlette's outermost
ServerErrorMiddleware): its 500 still carries the security headers and says nothing of
the error. In process: no route of the real server fails on purpose."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from pydantic import SecretStr

from shipyard.settings import Settings
from ui.app import create_app
from ui.headers import SECURITY_HEADERS


def test_an_internal_error_carries_the_security_headers_and_no_detail(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path, ui_secret_key=SecretStr("k" * 48)))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("the database password is hunter2")

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            return await c.get("/boom")

    answer = asyncio.run(ask())
    assert answer.status_code == 500
    assert "hunter2" not in answer.text
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value
