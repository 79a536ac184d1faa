"""Outgoing HTTP calls that carry the current request id to the next service."""

from __future__ import annotations

from typing import Any

import httpx

from servicekit.requestid import REQUEST_ID_HEADER, current_request_id

__all__ = ["make_http_client", "propagate_request_id"]

DEFAULT_TIMEOUT_SECONDS = 5.0


async def propagate_request_id(request: httpx.Request) -> None:
    """httpx request hook: set X-Request-ID to the request being served, unless the caller
    set one. Outside a request nothing is added."""
    request_id = current_request_id()
    if request_id is not None and REQUEST_ID_HEADER not in request.headers:
        request.headers[REQUEST_ID_HEADER] = request_id


def make_http_client(**kwargs: Any) -> httpx.AsyncClient:
    """An httpx.AsyncClient that propagates the request id, with a 5 s timeout unless
    `timeout` is given. Other keyword arguments go to httpx.AsyncClient unchanged."""
    kwargs.setdefault("timeout", DEFAULT_TIMEOUT_SECONDS)
    hooks = dict(kwargs.pop("event_hooks", None) or {})
    hooks["request"] = [propagate_request_id, *hooks.get("request", [])]
    return httpx.AsyncClient(event_hooks=hooks, **kwargs)
