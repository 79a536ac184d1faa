"""Prometheus's HTTP API: whether it answers, its version and targets, and range queries.

Every call is one HTTP request with a timeout; a failure is a :class:`PrometheusError`
naming the server and what it said (Prometheus's own ``error`` for a bad query). Each
client counts the queries it made and the seconds they took (:attr:`Prometheus.spent`),
which is what a canary's measurement through Prometheus costs Shipyard.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["Prometheus", "PrometheusError", "QueryCost"]


class PrometheusError(RuntimeError):
    """Prometheus did not answer, or refused the query; the message says which."""


@dataclass
class QueryCost:
    """What the queries of one client cost: how many, the seconds they took (wall clock,
    request to answer), and the points they returned."""

    queries: int = 0
    seconds: float = 0.0
    points: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"queries": self.queries, "seconds": round(self.seconds, 4),
                "points": self.points}


@dataclass
class Prometheus:
    """A Prometheus server at ``base_url`` (``http://127.0.0.1:9090``)."""

    base_url: str
    timeout_seconds: float = 10.0
    spent: QueryCost = field(default_factory=QueryCost)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")

    def answers(self) -> bool:
        """Whether the server says it is ready to serve queries (``/-/ready``)."""
        try:
            with httpx.Client(timeout=min(self.timeout_seconds, 2.0)) as http:
                return http.get(f"{self.base_url}/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def version(self) -> str:
        """The server's version (``/api/v1/status/buildinfo``), "" when it does not say."""
        data = self._get("/api/v1/status/buildinfo", {})
        return str(data.get("version", "")) if isinstance(data, dict) else ""

    def graph_page(self) -> str:
        """The path of the UI's graph page: ``/graph``, or ``/classic/graph`` on a server
        built without the React UI (Debian's), where ``/graph`` is not found."""
        for page in ("/graph", "/classic/graph"):
            try:
                with httpx.Client(timeout=min(self.timeout_seconds, 2.0)) as http:
                    if http.get(f"{self.base_url}{page}").status_code == 200:
                        return page
            except httpx.HTTPError:
                break
        return "/graph"

    def active_targets(self) -> list[dict[str, Any]]:
        """The targets being scraped now, each with its ``labels``, ``health`` and
        ``scrapePool`` (``/api/v1/targets``)."""
        data = self._get("/api/v1/targets", {"state": "active"})
        return list(data.get("activeTargets", [])) if isinstance(data, dict) else []

    def query(self, expression: str) -> list[dict[str, Any]]:
        """Evaluate ``expression`` now; returns the vector (``data.result``: series of
        ``metric`` labels and a [time, "value"] ``value``). Raises PrometheusError."""
        data = self._get("/api/v1/query", {"query": expression})
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            raise PrometheusError(f"{self.base_url}: an instant query answered "
                                  f"{str(data)[:200]}, not a vector")
        return list(data.get("result", []))

    def query_range(self, expression: str, *, start: float, end: float,
                    step: float) -> list[dict[str, Any]]:
        """Evaluate ``expression`` from ``start`` to ``end`` (Unix seconds) every ``step``
        seconds; returns the matrix (``data.result``: series of ``metric`` labels and
        ``values`` [time, "value"] pairs). Raises PrometheusError with Prometheus's own
        message for a bad expression."""
        began = time.perf_counter()
        try:
            data = self._get("/api/v1/query_range", {
                "query": expression, "start": f"{start:.3f}", "end": f"{end:.3f}",
                "step": f"{step:g}"})
        finally:
            self.spent.queries += 1
            self.spent.seconds += time.perf_counter() - began
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise PrometheusError(f"{self.base_url}: a range query answered "
                                  f"{str(data)[:200]}, not a matrix")
        result = list(data.get("result", []))
        self.spent.points += sum(len(row.get("values", ())) for row in result)
        return result

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.base_url}{path}"
        try:
            with httpx.Client(timeout=self.timeout_seconds) as http:
                response = http.get(url, params=params)
        except httpx.HTTPError as err:
            raise PrometheusError(f"Prometheus at {self.base_url} did not answer: "
                                  f"{type(err).__name__}: {err}") from err
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") != "success":
            said = (body.get("error") if isinstance(body, dict) else None) \
                or response.text.strip()[:300]
            raise PrometheusError(f"Prometheus at {self.base_url} answered {path} with "
                                  f"{response.status_code}: {said}")
        return body.get("data")
