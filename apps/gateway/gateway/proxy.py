"""Forwarding one client request to an instance: choose, send, judge, maybe retry, relay.

One shared httpx.AsyncClient carries every upstream call, so connections to instances are
pooled and kept alive. Its cookie jar refuses every cookie: a shared client must never
carry one client's cookies into another client's request.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from servicekit import make_http_client
from starlette.responses import JSONResponse, Response

from gateway.config import GatewaySettings
from gateway.forwarding import RawHeaders, response_headers
from gateway.metrics import GatewayMetrics
from gateway.outcome import Failure, Outcome, RetryPolicy
from gateway.upstreams import NoInstance, Pick, Upstream, Upstreams

__all__ = ["Forward", "Proxy", "make_upstream_client"]

logger = logging.getLogger("gateway.proxy")


def make_upstream_client(settings: GatewaySettings,
                         transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The pooled client for upstream calls: it propagates X-Request-ID (servicekit),
    keeps no cookies, follows no redirects (they are the client's to follow) and ignores
    proxy variables (instances are reached directly at their pod IPs)."""
    return make_http_client(
        timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
        limits=httpx.Limits(max_connections=settings.max_connections,
                            max_keepalive_connections=settings.max_connections),
        cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
        follow_redirects=False,
        trust_env=False,
        transport=transport,
    )


@dataclass(frozen=True)
class Forward:
    """A client request, ready to send to any instance of `app`: `target` is the path
    and query string to ask the instance for, exactly as the client encoded them."""

    app: str
    method: str
    target: str
    headers: RawHeaders
    body: bytes

    @property
    def path(self) -> str:
        """The target without its query string, which may carry secrets: what is logged."""
        return self.target.partition("?")[0]


class _ResponseTooLarge(Exception):
    pass


@dataclass(frozen=True)
class _Attempt:
    upstream: Upstream
    outcome: Outcome
    response: Response | None  # the instance's answer, when it gave one
    error: str = ""


class Proxy:
    """Sends Forwards upstream under one time budget per client request (every attempt
    included), retrying per `retry` on instances not yet tried."""

    def __init__(self, http: httpx.AsyncClient, upstreams: Upstreams, metrics: GatewayMetrics,
                 settings: GatewaySettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self.upstreams = upstreams
        self.metrics = metrics
        self.settings = settings
        self.retry = RetryPolicy(settings.retries)
        self.clock = clock

    async def forward(self, request: Forward) -> Response:
        """The answer for the client: the instance's, or a JSON error whose detail says
        what failed (503 no instance may take it, 502 no usable answer, 504 out of time)."""
        deadline = self.clock() + self.settings.timeout_seconds
        tried: list[Upstream] = []
        last: _Attempt | None = None
        while True:
            pick = self.upstreams.pick(request.app, frozenset(u.instance_id for u in tried))
            if isinstance(pick, NoInstance):
                if last is None:
                    return _error(503, pick.reason, request.app, attempts=0)
                break
            last = await self._attempt(pick, request, deadline - self.clock())
            tried.append(pick.upstream)
            if not (self.retry.should_retry(request.method, last.outcome, len(tried))
                    and deadline - self.clock() > 0):
                break
            self.metrics.retried(request.app)
            logger.info("retrying %s %s on another instance of %s after %s from %s",
                        request.method, request.path, request.app, last.outcome.label,
                        pick.upstream.instance_id)
        logger.info(
            "%s /api/%s%s -> %s via %s (%d attempt%s)", request.method, request.app,
            request.path, last.outcome.label, last.upstream.instance_id, len(tried),
            "" if len(tried) == 1 else "s",
            extra={"upstream_app": request.app, "upstream_instance": last.upstream.instance_id,
                   "upstream_version": last.upstream.version, "upstream_status": last.outcome.label,
                   "attempts": len(tried)})
        if last.response is not None:
            return last.response
        return self._failure_response(request, last, len(tried))

    async def _attempt(self, pick: Pick, request: Forward, budget: float) -> _Attempt:
        upstream = pick.upstream
        started = self.clock()
        outcome: Outcome | None = None
        try:
            outcome, response, error = await self._send(upstream, request, budget)
        finally:
            # None: cancelled (the client left), so no verdict on the instance.
            self.upstreams.finish(pick, outcome)
        self.metrics.attempted(upstream, outcome, self.clock() - started)
        if error:
            logger.warning("%s %s to %s instance %s at %s: %s", request.method, request.path,
                           upstream.app, upstream.instance_id, upstream.instance.base_url, error)
        return _Attempt(upstream, outcome, response, error)

    async def _send(self, upstream: Upstream, request: Forward,
                    budget: float) -> tuple[Outcome, Response | None, str]:
        if budget <= 0:
            return Outcome(failure="timeout"), None, "no time left for an attempt"
        url = f"{upstream.instance.base_url}{request.target}"
        timeout = httpx.Timeout(budget, connect=min(budget, self.settings.connect_timeout_seconds))
        failure: Failure
        try:
            # httpx's timeouts bound each phase; this bounds their sum.
            async with asyncio.timeout(budget):
                sent = self.http.build_request(request.method, url, headers=request.headers,
                                               content=request.body or None, timeout=timeout)
                answer = await self.http.send(sent, stream=True)
                try:
                    body = await self._read(answer)
                finally:
                    await answer.aclose()
        except httpx.ConnectError as err:
            failure, error = "connect_error", f"connect error: {err}"
        except httpx.ConnectTimeout:
            failure, error = "connect_error", (
                f"no connection within {self.settings.connect_timeout_seconds:g} s")
        except (httpx.TimeoutException, TimeoutError):
            failure, error = "timeout", f"no answer within {budget:.3g} s"
        except httpx.LocalProtocolError as err:
            failure, error = "rejected", f"the request cannot be sent: {err}"
        except httpx.TransportError as err:
            failure, error = "protocol_error", f"{type(err).__name__}: {err}"
        except _ResponseTooLarge:
            failure, error = "too_large", (
                f"answer over {self.settings.max_response_bytes} bytes")
        except httpx.InvalidURL as err:
            failure, error = "rejected", f"the request's path cannot be sent: {err}"
        else:
            relayed = _relay(answer, body, head=request.method == "HEAD")
            return Outcome(status=answer.status_code), relayed, ""
        return Outcome(failure=failure), None, error

    async def _read(self, answer: httpx.Response) -> bytes:
        # Raw: relayed as the instance encoded it (gzip stays gzip, Content-Encoding true).
        body = bytearray()
        async for chunk in answer.aiter_raw():
            body += chunk
            if len(body) > self.settings.max_response_bytes:
                raise _ResponseTooLarge
        return bytes(body)

    def _failure_response(self, request: Forward, last: _Attempt, attempts: int) -> Response:
        app, instance = request.app, last.upstream.instance_id
        match last.outcome.failure:
            case "timeout":
                return _error(504, f"app {app!r} did not answer within "
                              f"{self.settings.timeout_seconds:g} s (GATEWAY_TIMEOUT_SECONDS)",
                              app, attempts, instance)
            case "rejected":
                return _error(400, f"the request cannot be forwarded: {last.error}", app,
                              attempts, instance)
            case "too_large":
                return _error(502, f"app {app!r} answered with more than "
                              f"{self.settings.max_response_bytes} bytes", app, attempts, instance)
            case "connect_error":
                return _error(502, f"could not connect to app {app!r}", app, attempts, instance)
            case _:
                return _error(502, f"app {app!r} gave no valid HTTP answer: {last.error}", app,
                              attempts, instance)


def _relay(answer: httpx.Response, body: bytes, *, head: bool) -> Response:
    relayed = Response(body, status_code=answer.status_code)
    # A HEAD answer has no body to measure: its length is the instance's to state.
    own = [h for h in relayed.raw_headers if not (head and h[0] == b"content-length")]
    relayed.raw_headers = own + response_headers(answer.headers.raw, keep_length=head)
    return relayed


def _error(status: int, detail: str, app: str, attempts: int,
           instance: str | None = None) -> JSONResponse:
    body: dict[str, object] = {"detail": detail, "app": app, "attempts": attempts}
    if instance is not None:
        body["instance"] = instance
    return JSONResponse(body, status_code=status)
