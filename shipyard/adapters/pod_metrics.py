"""Scraping pods' ``/metrics`` through the Kubernetes API server's pod proxy.

Through the API server rather than to the pods' IPs: it needs nothing but the kubeconfig,
works wherever the API server can reach the pods, and the proxy names the pod, so every
scrape is attributed to the pod that answered it. Only Running and Ready pods are
scraped, the ones a Service sends traffic to; a pod that does not answer is reported in
the round's errors and the others are scraped all the same.

Times are ``time.monotonic()``, the clock of ``shipyard.adapters.load``, so scrapes and
load samples can be put on one timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from shipyard.adapters.kube import Kube
from shipyard.domain.metric_series import PodScrape, ScrapeError, ScrapeRound

__all__ = ["MetricsRecorder", "PodScrape", "ScrapeError", "ScrapeRound", "scrape_pods",
           "start_recording"]

# Pods of one track are a handful; this many scrapes at once keeps one slow pod from
# delaying the others' timestamps without opening a connection per pod of a big selector.
_PARALLEL_SCRAPES = 8


def scrape_pods(kube: Kube, namespace: str, selector: str, *, port: int,
                path: str = "metrics", timeout_seconds: float = 5.0) -> ScrapeRound:
    """GET ``/<path>`` of every Running and Ready pod matching the label ``selector``
    in ``namespace``, on container port number ``port`` (the pod proxy takes no port
    names: the API server would pass the name on as the port).

    Never raises for a pod or the API server: a pod that fails to answer, or a failed
    pod listing (reported with pod ""), is an error of the round. A pod that hangs costs
    ``timeout_seconds``; the connection retries a broken connection once, never a slow
    answer (see :mod:`shipyard.adapters.kube_client`).
    """
    at = time.monotonic()
    core = client.CoreV1Api(kube.client.api)
    try:
        listed = core.list_namespaced_pod(namespace, label_selector=selector,
                                          _request_timeout=timeout_seconds)
    except (ApiException, HTTPError, OSError) as err:
        return ScrapeRound(at, (), (ScrapeError("", time.monotonic(),
                                                f"listing pods {selector!r} in {namespace}: "
                                                f"{_reason(err)}"),))
    names = sorted(str(pod.metadata.name) for pod in listed.items
                   if pod.metadata is not None and _running_and_ready(pod))
    if not names:
        return ScrapeRound(at, ())
    with ThreadPoolExecutor(min(len(names), _PARALLEL_SCRAPES),
                            thread_name_prefix="scrape") as pool:
        outcomes = list(pool.map(
            lambda name: _scrape_one(core, namespace, name, port, path, timeout_seconds),
            names))
    return ScrapeRound(at, tuple(o for o in outcomes if isinstance(o, PodScrape)),
                       tuple(o for o in outcomes if isinstance(o, ScrapeError)))


class MetricsRecorder:
    """Scrapes a selector's pods every ``interval_seconds`` for ``duration_seconds``, as
    an asyncio task (each round in a worker thread, so the event loop, and a load run
    sharing it, keeps its timing). Started by ``start_recording``.

    Round k begins ``k * interval_seconds`` after the start (a round that overruns skips
    the ticks it missed rather than bunching up); no round begins after the duration, so
    there are at most ``duration / interval + 1`` rounds. ``rounds`` grows as they end.
    As an async context manager, recording stops when the block ends.
    """

    def __init__(self, kube: Kube, namespace: str, selector: str, *, port: int,
                 interval_seconds: float = 5.0, duration_seconds: float = 60.0,
                 path: str = "metrics", timeout_seconds: float = 5.0) -> None:
        if not interval_seconds > 0:
            raise ValueError(f"interval_seconds must be positive, not {interval_seconds}")
        if not 0 <= duration_seconds < float("inf"):
            raise ValueError(f"duration_seconds must be finite and not negative, "
                             f"not {duration_seconds}")
        self.kube, self.namespace, self.selector = kube, namespace, selector
        self.port, self.path, self.timeout_seconds = port, path, timeout_seconds
        self.interval_seconds = interval_seconds
        self.duration_seconds = duration_seconds
        self.rounds: list[ScrapeRound] = []
        self.started_at = time.monotonic()
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._record(), name=f"metrics {namespace}/{selector}")

    async def wait(self) -> list[ScrapeRound]:
        """Wait until the duration is over and the last round has ended."""
        await asyncio.shield(self._task)
        return self.rounds

    async def stop(self) -> list[ScrapeRound]:
        """Begin no more rounds; wait for the one under way (if any) and return them all."""
        self._stopping.set()
        return await self.wait()

    async def __aenter__(self) -> MetricsRecorder:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def _record(self) -> None:
        tick = 0
        while not self._stopping.is_set():
            due = self.started_at + tick * self.interval_seconds
            if due > self.started_at + self.duration_seconds:
                return
            delay = due - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    return
            self.rounds.append(await asyncio.to_thread(
                scrape_pods, self.kube, self.namespace, self.selector, port=self.port,
                path=self.path, timeout_seconds=self.timeout_seconds))
            elapsed = time.monotonic() - self.started_at
            tick = max(tick + 1, int(elapsed // self.interval_seconds) + 1)


def start_recording(kube: Kube, namespace: str, selector: str, *, port: int,
                    interval_seconds: float = 5.0, duration_seconds: float = 60.0,
                    path: str = "metrics", timeout_seconds: float = 5.0) -> MetricsRecorder:
    """Start a MetricsRecorder now, in the running event loop (the first round at once)."""
    return MetricsRecorder(kube, namespace, selector, port=port,
                           interval_seconds=interval_seconds,
                           duration_seconds=duration_seconds, path=path,
                           timeout_seconds=timeout_seconds)


def _scrape_one(core: client.CoreV1Api, namespace: str, pod: str, port: int,
                path: str, timeout_seconds: float) -> PodScrape | ScrapeError:
    try:
        # Unparsed (_preload_content=False): the client would otherwise refuse content
        # types it does not know, such as OpenMetrics', or read a JSON-looking body as JSON.
        response: Any = core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:{port}", namespace, path.lstrip("/"), _preload_content=False,
            _request_timeout=timeout_seconds)
        try:
            body = bytes(response.data or b"")
        finally:
            response.release_conn()
        return PodScrape(pod, time.monotonic(), body.decode("utf-8", errors="replace"))
    except (ApiException, HTTPError, OSError) as err:
        return ScrapeError(pod, time.monotonic(), f"GET /{path.lstrip('/')} of pod "
                                                  f"{namespace}/{pod}:{port}: {_reason(err)}")


def _running_and_ready(pod: Any) -> bool:
    status = pod.status
    if status is None or status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])


def _reason(err: Exception) -> str:
    if isinstance(err, ApiException):
        body = (err.body or "")
        if isinstance(body, bytes):
            body = body.decode(errors="replace")
        return f"{err.status} {err.reason}: {str(body).strip()[:200]}".rstrip(": ")
    return f"{type(err).__name__}: {err}"
