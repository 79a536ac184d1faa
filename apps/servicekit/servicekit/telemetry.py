"""What happened to each request: Prometheus series and one JSON access-log line.

Both come from one middleware so they agree: the same route template, status and
duration feed the metric and the log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.metrics import ServiceMetrics
from servicekit.routes import route_template

__all__ = ["CLIENT_CLOSED", "TelemetryMiddleware"]

access_logger = logging.getLogger("servicekit.access")

# nginx's code for "the client went away before an answer was sent": counting such a
# request as a 500 would charge the service with the client's impatience.
CLIENT_CLOSED = 499


class TelemetryMiddleware:
    """Count, time and log every HTTP request.

    The access-log record's message is "METHOD path status" and its fields are method,
    path, route, status, duration_ms and client; the JSON formatter adds ts, level, app,
    version and request_id. Status is 500 if the app raised before answering.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.metrics = metrics
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None
        started = self.clock()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.inflight.inc()
        raised = True
        try:
            await self.app(scope, receive, capture)
            raised = False
        finally:
            self.metrics.inflight.dec()
            if status is None:
                status = 500 if raised else CLIENT_CLOSED
            self._record(scope, status, self.clock() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method, route = scope["method"], route_template(scope)
        self.metrics.observe_request(method, route, status, seconds)
        client = scope.get("client")
        access_logger.info(
            "%s %s %d", method, scope["path"], status,
            extra={
                "method": method,
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client": f"{client[0]}:{client[1]}" if client else None,
            },
        )
