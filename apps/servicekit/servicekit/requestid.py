"""Request ids: one per request, taken from X-Request-ID or made up, visible everywhere.

The id lives in a contextvar, so log records and outgoing HTTP calls made while serving a
request carry it without being handed it. ASGI servers run each request in its own task,
and threadpool calls copy the context, so the id never leaks between requests.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REQUEST_ID_HEADER",
    "RequestIdMiddleware",
    "accept_request_id",
    "current_request_id",
]

REQUEST_ID_HEADER = "X-Request-ID"
# Short and free of spaces, quotes and control characters: the id is copied into log
# lines and headers, so a client must not be able to forge log structure with it.
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_current: ContextVar[str | None] = ContextVar("servicekit_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served in this context, or None outside a request."""
    return _current.get()


def accept_request_id(offered: str | None) -> str:
    """`offered` if it is a valid id (1-128 of A-Z a-z 0-9 . _ : -), else a new random one."""
    if offered is not None and _VALID.match(offered):
        return offered
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Give every HTTP request an id, expose it via `current_request_id()` while the request
    is served, and set it as X-Request-ID on the response (also on error responses)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode("latin-1"))
        request_id = accept_request_id(offered.decode("latin-1") if offered else None)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        token = _current.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
