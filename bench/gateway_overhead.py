"""What the gateway costs, and what each service serves: the four apps started as local
processes (``shipyard apps run``'s code, free ports, a temporary home), then

1. latency: ``--requests`` GETs of data's recent activities, straight to data and through
   the gateway, interleaved so both see the same machine; p50 and p99 of each, and the
   gateway's added latency;
2. throughput: each service alone (one uvicorn process, so one core for its event loop)
   under ``--concurrency`` closed-loop clients for ``--seconds``: requests per second.

    .venv/bin/python bench/gateway_overhead.py [--requests 1000] [--seconds 5]

Bounded in count and time; every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from shipyard.stack.local_apps import LocalApps
from stages.catalog import discover_apps, read_descriptor

PROJECT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(direct: str, via_gateway: str, requests: int) -> tuple[list[float], list[float]]:
    plain: list[float] = []
    proxied: list[float] = []
    with httpx.Client(timeout=10) as client:
        for url in (direct, via_gateway) * 50:  # warm both paths and the cache
            client.get(url).raise_for_status()
        for _ in range(requests):
            for url, times in ((direct, plain), (via_gateway, proxied)):
                started = time.perf_counter()
                client.get(url).raise_for_status()
                times.append(time.perf_counter() - started)
    return plain, proxied


Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


async def throughput(send: Send, seconds: float,
                     concurrency: int) -> tuple[float, int]:
    """Requests per second answered 2xx by ``concurrency`` clients looping for ``seconds``;
    and how many were not 2xx."""
    done = failed = 0
    deadline = time.perf_counter() + seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal done, failed
        while time.perf_counter() < deadline:
            response = await send(client)
            if response.is_success:
                done += 1
            else:
                failed += 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return done / elapsed, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    names = discover_apps(PROJECT)
    local = LocalApps(PROJECT / "apps", {n: read_descriptor(PROJECT, n) for n in names},
                      Path(tempfile.mkdtemp(prefix="shipyard-bench-")), {}, free_ports=True,
                      version="bench")
    started = local.start(lambda i: None)
    try:
        url = {i.app: i.url for i in started}
        user = f"bench-{uuid.uuid4().hex[:8]}"
        with httpx.Client(timeout=10) as client:
            for n in range(20):
                client.post(f"{url['data']}/activities",
                            json={"user_id": user, "content_id": f"c{n}"}).raise_for_status()
        path = f"/users/{user}/activities?limit=10"
        plain, proxied = latency(url["data"] + path, f"{url['gateway']}/api/data{path}",
                                 args.requests)
        print(f"latency, {args.requests} GETs each (data's first page, cached):")
        for label, times in (("direct to data", plain), ("through gateway", proxied)):
            print(f"  {label:16} p50 {percentile(times, .5) * 1e3:6.2f} ms   "
                  f"p99 {percentile(times, .99) * 1e3:6.2f} ms")
        for q in (.5, .99):
            added = percentile(proxied, q) - percentile(plain, q)
            print(f"  gateway adds at p{round(q * 100)}: {added * 1e3:6.2f} ms "
                  f"({percentile(proxied, q) / percentile(plain, q):.2f}x direct)")
        print(f"  mean ratio gateway/direct: "
              f"{statistics.mean(proxied) / statistics.mean(plain):.2f}x")

        loads: dict[str, Send] = {
            "discovery GET /eureka/apps": lambda c: c.get(f"{url['discovery']}/eureka/apps"),
            "data GET first page": lambda c: c.get(url["data"] + path),
            "data POST activity": lambda c: c.post(
                f"{url['data']}/activities", json={"user_id": user, "content_id": "c1"}),
            "streaming POST record": lambda c: c.post(
                f"{url['streaming']}/topics/bench/records",
                json={"records": [{"key": "k", "value": {"n": 1}}]}),
            "gateway -> data GET": lambda c: c.get(f"{url['gateway']}/api/data{path}"),
        }
        httpx.post(f"{url['streaming']}/topics", json={"name": "bench", "partitions": 3},
                   timeout=10)
        print(f"throughput, {args.concurrency} clients for {args.seconds:g} s each:")
        for label, send in loads.items():
            rate, failed = asyncio.run(throughput(send, args.seconds, args.concurrency))
            print(f"  {label:28} {rate:8.0f} req/s" + (f"  ({failed} not 2xx)" if failed else ""))
    finally:
        local.stop()


if __name__ == "__main__":
    main()
