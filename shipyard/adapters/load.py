"""A bounded, open-loop HTTP load generator: requests at a steady rate, each one a Sample.

Open loop: request i is due at ``i / rate_per_second`` seconds after the start, whether or
not earlier ones have been answered, so a slow server meets the same arrivals a real
client population would send (a closed loop would back off and hide the slowdown). At
most ``concurrency`` requests are in flight; when all slots are taken the next request
waits for one and goes out late, so a server that cannot keep up shows as fewer requests
than ``rate x duration`` and as late ``started`` times, while ``latency`` stays the time
from sending to the answer.

Every run is bounded three ways: no request is sent after ``duration_seconds``, never more
than ``max_requests``, and each request ends within ``timeout_seconds`` (connect, send and
answer together), so a run ends at most ``duration_seconds + timeout_seconds`` after it
began. HTTP/1.1 with keep-alive; no proxy from the environment is ever used.

Keep-alive and Service switches: kube-proxy routes a *connection*, once. An open
keep-alive connection keeps reaching the pod it was routed to after the Service's
selector changed, until either side closes it. ``keep_alive=False`` sends every request
on a new connection (``Connection: close``), which measures what new clients see.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from shipyard.domain.traffic import Sample

__all__ = ["LoadRun", "LoadSpec", "run_load", "start_load"]

# A body larger than this is not read as JSON for its version: /version answers are tiny.
_VERSION_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to send: ``paths`` round-robin to ``base_url`` at ``rate_per_second``."""

    base_url: str
    paths: tuple[str, ...] = ("/version",)
    rate_per_second: float = 20.0
    duration_seconds: float = 10.0
    max_requests: int = 10_000
    timeout_seconds: float = 2.0
    concurrency: int = 16
    headers: Mapping[str, str] = field(default_factory=dict)
    keep_alive: bool = True

    def __post_init__(self) -> None:
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be an http(s) URL with a host, "
                             f"not {self.base_url!r}")
        if not self.paths or not all(p.startswith("/") for p in self.paths):
            raise ValueError(f"paths must be one or more paths starting with /, "
                             f"not {self.paths!r}")
        for name in ("rate_per_second", "duration_seconds", "timeout_seconds"):
            value = getattr(self, name)
            if not value > 0 or value == float("inf"):
                raise ValueError(f"{name} must be a positive finite number, not {value!r}")
        for name in ("max_requests", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)!r}")


class LoadRun:
    """A load run under way, started by ``start_load``.

    ``samples`` grows as requests end (in the order they end). ``started_at`` is the
    ``time.monotonic()`` of the start: a sample's ``started`` is seconds after it, and
    ``since_start`` puts any other monotonic moment on the same timeline. As an async
    context manager, the run is stopped when the block ends.
    """

    def __init__(self, spec: LoadSpec) -> None:
        loop = asyncio.get_running_loop()
        self.spec = spec
        self.samples: list[Sample] = []
        # Made before the clock starts: building its TLS context takes tens of ms, which
        # would otherwise make the first requests late.
        self._client = _client_for(spec)
        self.started_at = time.monotonic()
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._task = loop.create_task(self._run(), name=f"load {spec.base_url}")

    def since_start(self, moment: float) -> float:
        """``moment`` (a ``time.monotonic()`` reading) in seconds since the load started."""
        return moment - self.started_at

    @property
    def done(self) -> bool:
        return self._task.done()

    async def wait(self) -> list[Sample]:
        """Wait for the run to end by itself (duration or request cap reached, last
        requests answered or timed out); return the samples."""
        await asyncio.shield(self._task)
        return self.samples

    async def stop(self) -> list[Sample]:
        """Send nothing more, let the requests in flight end (each within the timeout),
        and return the samples."""
        self._stopping.set()
        return await self.wait()

    async def __aenter__(self) -> LoadRun:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def _run(self) -> None:
        spec = self.spec
        slots = asyncio.Semaphore(spec.concurrency)
        deadline = self.started_at + spec.duration_seconds
        async with self._client as client:
            try:
                for index in range(spec.max_requests):
                    due = self.started_at + index / spec.rate_per_second
                    if due >= deadline or not await self._until(due):
                        break
                    await slots.acquire()
                    if self._stopping.is_set() or time.monotonic() >= deadline:
                        slots.release()
                        break
                    path = spec.paths[index % len(spec.paths)]
                    task = asyncio.create_task(self._request(client, path, slots))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
            finally:
                # Cancelled or not, the requests already sent end by their own timeout.
                if self._in_flight:
                    await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _until(self, due: float) -> bool:
        """Sleep until ``due``; False if the run was stopped meanwhile."""
        delay = due - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        return not self._stopping.is_set()

    async def _request(self, client: httpx.AsyncClient, path: str,
                       slots: asyncio.Semaphore) -> None:
        sent = time.monotonic()
        status, version = 0, ""
        try:
            async with asyncio.timeout(self.spec.timeout_seconds):
                response = await client.get(path)
            status, version = response.status_code, _version_of(response)
        except (httpx.HTTPError, TimeoutError, OSError):
            pass  # status 0: refused, reset or timed out
        finally:
            slots.release()
            ended = time.monotonic()
            self.samples.append(Sample(sent - self.started_at, ended - sent, status, version))


def start_load(spec: LoadSpec) -> LoadRun:
    """Start sending load now, in the running event loop; the run ends by itself."""
    return LoadRun(spec)


async def run_load(spec: LoadSpec) -> list[Sample]:
    """Send the whole load and return its samples."""
    return await start_load(spec).wait()


def _client_for(spec: LoadSpec) -> httpx.AsyncClient:
    headers = dict(spec.headers)
    if not spec.keep_alive:
        headers["Connection"] = "close"
    limits = httpx.Limits(max_connections=spec.concurrency,
                          max_keepalive_connections=spec.concurrency if spec.keep_alive else 0)
    return httpx.AsyncClient(base_url=spec.base_url, headers=headers, limits=limits,
                             timeout=spec.timeout_seconds, trust_env=False,
                             follow_redirects=False)


def _version_of(response: httpx.Response) -> str:
    if "json" not in response.headers.get("content-type", ""):
        return ""
    if len(response.content) > _VERSION_BODY_LIMIT:
        return ""
    try:
        body = json.loads(response.content)
    except ValueError:
        return ""
    version = body.get("version") if isinstance(body, dict) else None
    return version if isinstance(version, str) else ""
