"""Client of Shipyard's discovery service (apps/discovery/README.md).

Discovery replicas never talk to each other; clients fan out. DISCOVERY_URL names either
several base URLs or one whose host is a headless Service resolving to every replica's
pod IP. The Registrar therefore registers and heartbeats with every address, re-resolving
each round so a new or restarted replica is filled within one heartbeat (its 404 to a
heartbeat means "register again"). Reads can go to any replica: the RegistryCache polls
one for deltas and falls back to a full fetch when told to, or when the replica's epoch
differs from the one its versions belong to. When discovery is unreachable the cache keeps
answering from what it last saw, because a stale answer costs a retry while no answer
takes every caller down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import httpx
from fastapi import FastAPI

from servicekit.app import Lifespan, service_state
from servicekit.background import cancel_and_wait
from servicekit.config import ServiceConfig
from servicekit.httpclient import make_http_client

__all__ = [
    "DiscoveryClient",
    "Instance",
    "Outcome",
    "Registrar",
    "Registration",
    "RegistryCache",
    "discovery_client",
    "discovery_lifespan",
    "replica_urls",
    "resolve_all",
]

logger = logging.getLogger("servicekit.discovery")

Resolver = Callable[[str, int], Awaitable[list[str]]]
Sleep = Callable[[float], Awaitable[None]]
_PAYLOAD_ERRORS = (KeyError, TypeError, ValueError)  # a reply not shaped like discovery's


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class Instance:
    """One registered instance as discovery reports it."""

    app: str
    instance_id: str
    host: str
    port: int
    status: str
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{_host_in_url(self.host)}:{self.port}"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Instance:
        """Raise KeyError/TypeError/ValueError if `data` is not an instance object."""
        return cls(
            app=str(data["app"]),
            instance_id=str(data["instance_id"]),
            host=str(data["host"]),
            port=int(data["port"]),
            status=str(data["status"]),
            metadata=MappingProxyType({str(k): str(v) for k, v in data["metadata"].items()}),
        )


@dataclass(frozen=True)
class Registration:
    """What this process registers: instance `instance_id` of `app` at host:port."""

    app: str
    instance_id: str
    host: str
    port: int
    metadata: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "host": self.host, "port": self.port,
                "status": "UP", "metadata": dict(self.metadata)}


async def resolve_all(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in resolver order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def replica_urls(base_urls: Sequence[str], resolver: Resolver = resolve_all) -> list[str]:
    """One base URL per discovery replica.

    An http URL whose host is a name becomes one URL per address the name resolves to (a
    headless Service lists every pod). IP literals and https URLs (whose certificate names
    the host) are kept as they are. A name that does not resolve is logged and skipped.
    """
    urls: list[str] = []
    for base in base_urls:
        parsed = httpx.URL(base)
        if parsed.scheme != "http" or _is_ip(parsed.host):
            urls.append(base)
            continue
        port = parsed.port or 80
        try:
            addresses = await resolver(parsed.host, port)
        except OSError as err:
            logger.warning("cannot resolve discovery host %s: %s", parsed.host, err)
            continue
        urls += [f"http://{_host_in_url(address)}:{port}" for address in addresses]
    return list(dict.fromkeys(urls))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Outcome(StrEnum):
    """What one call to one replica achieved."""

    REGISTERED = "registered"
    RENEWED = "renewed"
    REREGISTERED = "re-registered"  # the replica had forgotten us (restart or eviction)
    DEREGISTERED = "deregistered"
    UNKNOWN = "unknown"  # a cancel for an instance the replica did not know: nothing to do
    FAILED = "failed"


class Registrar:
    """Keeps one Registration alive on every discovery replica.

    Each method calls every replica concurrently, so one slow replica delays no other, and
    returns {replica URL: Outcome}. Failures are logged, never raised.
    """

    def __init__(self, http: httpx.AsyncClient, base_urls: Sequence[str],
                 registration: Registration, resolver: Resolver = resolve_all) -> None:
        self.http = http
        self.base_urls = tuple(base_urls)
        self.registration = registration
        self.resolver = resolver

    async def register_all(self) -> dict[str, Outcome]:
        return await self._each(self._register)

    async def heartbeat_all(self) -> dict[str, Outcome]:
        """Renew the lease everywhere; a replica answering 404 gets a fresh registration."""
        return await self._each(self._heartbeat)

    async def deregister_all(self) -> dict[str, Outcome]:
        return await self._each(self._deregister)

    async def run(self, interval: float, sleep: Sleep = asyncio.sleep) -> None:
        """Register, then heartbeat every `interval` seconds until cancelled."""
        await self.register_all()
        while True:
            await sleep(interval)
            try:
                await self.heartbeat_all()
            except Exception:  # a bug here must not end the heartbeats for good
                logger.exception("heartbeat round failed; retrying in %s s", interval)

    @property
    def _path(self) -> str:
        return f"/eureka/apps/{self.registration.app}"

    async def _register(self, url: str, outcome: Outcome = Outcome.REGISTERED) -> Outcome:
        response = await self.http.post(f"{url}{self._path}", json=self.registration.body())
        response.raise_for_status()
        return outcome

    async def _heartbeat(self, url: str) -> Outcome:
        response = await self.http.put(f"{url}{self._path}/{self.registration.instance_id}")
        if response.status_code == 404:
            logger.info("discovery replica %s does not know us; registering again", url)
            return await self._register(url, Outcome.REREGISTERED)
        response.raise_for_status()
        return Outcome.RENEWED

    async def _deregister(self, url: str) -> Outcome:
        response = await self.http.delete(f"{url}{self._path}/{self.registration.instance_id}")
        if response.status_code == 404:
            return Outcome.UNKNOWN
        response.raise_for_status()
        return Outcome.DEREGISTERED

    async def _each(self, call: Callable[[str], Awaitable[Outcome]]) -> dict[str, Outcome]:
        urls = await replica_urls(self.base_urls, self.resolver)
        if not urls:
            logger.warning("no discovery replica found at %s", ", ".join(self.base_urls))
        outcomes = await asyncio.gather(*(self._guarded(call, url) for url in urls))
        return dict(zip(urls, outcomes, strict=True))

    async def _guarded(self, call: Callable[[str], Awaitable[Outcome]], url: str) -> Outcome:
        try:
            return await call(url)
        except httpx.HTTPError as err:
            logger.warning("discovery replica %s: %s failed: %s", url,
                           getattr(call, "__name__", "call").lstrip("_"), err)
            return Outcome.FAILED


class RegistryCache:
    """A local copy of the registry, refreshed by polling one replica for deltas.

    `instances(app)` answers from memory, so callers never wait on discovery and keep
    working, on the last known registry, while it is down.
    """

    def __init__(self, http: httpx.AsyncClient, base_urls: Sequence[str],
                 resolver: Resolver = resolve_all,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self.base_urls = tuple(base_urls)
        self.resolver = resolver
        self.clock = clock
        self.epoch: str | None = None
        self.version = 0
        self.refreshed_at: float | None = None
        self._apps: dict[str, dict[str, Instance]] = {}
        self._preferred: str | None = None

    @property
    def loaded(self) -> bool:
        """True once any refresh has succeeded."""
        return self.refreshed_at is not None

    def age(self) -> float | None:
        """Seconds since the last successful refresh; None if there was none."""
        return None if self.refreshed_at is None else self.clock() - self.refreshed_at

    def instances(self, app: str) -> list[Instance]:
        """The UP instances of `app`, sorted by instance id; empty if none are known."""
        known = self._apps.get(app, {})
        return [known[key] for key in sorted(known) if known[key].status == "UP"]

    def apps(self) -> list[str]:
        """The apps with at least one UP instance, sorted by name."""
        return sorted(app for app in self._apps if self.instances(app))

    def apply_snapshot(self, payload: Mapping[str, Any]) -> None:
        """Replace the cache with a GET /eureka/apps answer."""
        apps = {
            name: {i.instance_id: i for i in map(Instance.from_json, instances)}
            for name, instances in payload["apps"].items()
        }
        self.epoch, self.version, self._apps = str(payload["epoch"]), int(payload["version"]), apps

    def apply_delta(self, payload: Mapping[str, Any]) -> bool:
        """Apply a GET /eureka/apps/delta answer. False, with the cache untouched, when a
        full fetch is needed: the replica said so, its epoch is not ours, or the changes do
        not continue exactly from our version."""
        if payload["full_refresh_required"] or payload["epoch"] != self.epoch:
            return False
        changes = [(int(c["version"]), str(c["action"]), Instance.from_json(c["instance"]))
                   for c in payload["changes"]]
        versions = [version for version, _, _ in changes]
        if versions != list(range(self.version + 1, int(payload["version"]) + 1)):
            return False
        for _, action, instance in changes:
            instances = self._apps.setdefault(instance.app, {})
            if action == "DELETED":
                instances.pop(instance.instance_id, None)
                if not instances:
                    del self._apps[instance.app]
            else:
                instances[instance.instance_id] = instance
        self.version = int(payload["version"])
        return True

    async def refresh(self) -> bool:
        """Bring the cache up to date from the first replica that answers, trying the last
        good one first. False, logged, with the cache kept as it was, if none answers."""
        urls = await replica_urls(self.base_urls, self.resolver)
        preferred = self._preferred
        if preferred is not None and preferred in urls:
            urls.remove(preferred)
            urls.insert(0, preferred)
        failures = []
        for url in urls:
            try:
                await self._refresh_from(url)
            except (httpx.HTTPError, *_PAYLOAD_ERRORS) as err:
                failures.append(f"{url}: {err!r}")
                continue
            self._preferred = url
            self.refreshed_at = self.clock()
            return True
        age = self.age()
        logger.warning(
            "discovery unreachable (%s); serving the cached registry (%s)",
            "; ".join(failures) or f"no replica found at {', '.join(self.base_urls)}",
            "never loaded" if age is None else f"last refreshed {age:.1f} s ago",
        )
        return False

    async def run(self, interval: float, sleep: Sleep = asyncio.sleep) -> None:
        """Refresh every `interval` seconds until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug here must not freeze the cache for good
                logger.exception("registry refresh failed; retrying in %s s", interval)
            await sleep(interval)

    async def _refresh_from(self, url: str) -> None:
        if self.epoch is not None:
            response = await self.http.get(f"{url}/eureka/apps/delta",
                                           params={"since": self.version, "epoch": self.epoch})
            response.raise_for_status()
            if self.apply_delta(response.json()):
                return
        response = await self.http.get(f"{url}/eureka/apps")
        response.raise_for_status()
        self.apply_snapshot(response.json())


class DiscoveryClient:
    """This process's view of discovery: an optional Registrar and an optional cache.

    `start` launches the heartbeat and refresh loops (after one refresh, so the cache is
    warm when startup ends if discovery answers); `leave` stops heartbeating and
    deregisters (once); `stop` leaves and ends the loops.
    """

    def __init__(self, registrar: Registrar | None, cache: RegistryCache | None, *,
                 heartbeat_seconds: float, refresh_seconds: float,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.registrar = registrar
        self.cache = cache
        self.heartbeat_seconds = heartbeat_seconds
        self.refresh_seconds = refresh_seconds
        self.sleep = sleep
        self._heartbeats: asyncio.Task[None] | None = None
        self._refreshes: asyncio.Task[None] | None = None
        self._left = False

    def instances(self, app: str) -> list[Instance]:
        """The UP instances of `app` from the cache (see RegistryCache.instances)."""
        return self._cache().instances(app)

    def apps(self) -> list[str]:
        """The apps with at least one UP instance in the cache, sorted (see
        RegistryCache.apps)."""
        return self._cache().apps()

    async def start(self) -> None:
        if self.registrar is not None:
            self._heartbeats = asyncio.create_task(
                self.registrar.run(self.heartbeat_seconds, self.sleep))
        if self.cache is not None:
            await self.cache.refresh()
            self._refreshes = asyncio.create_task(self._refresh_later())

    async def leave(self) -> None:
        if self._left or self.registrar is None:
            return
        self._left = True
        await cancel_and_wait(self._heartbeats)
        outcomes = await self.registrar.deregister_all()
        logger.info("left discovery: %s", {url: str(o) for url, o in outcomes.items()})

    async def stop(self) -> None:
        await self.leave()
        await cancel_and_wait(self._refreshes)

    def _cache(self) -> RegistryCache:
        if self.cache is None:
            raise RuntimeError("this DiscoveryClient does not watch the registry (watch=False)")
        return self.cache

    async def _refresh_later(self) -> None:
        assert self.cache is not None
        await self.sleep(self.refresh_seconds)
        await self.cache.run(self.refresh_seconds, self.sleep)


def discovery_lifespan(
    config: ServiceConfig,
    *,
    register: bool = True,
    watch: bool = True,
    metadata: Mapping[str, str] | None = None,
    resolver: Resolver = resolve_all,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Lifespan:
    """A lifespan for build_service: register this instance (as the service's name, at
    config.advertise_host:config.port, metadata plus {"version": config.app_version})
    and/or keep a registry cache, reachable as `discovery_client(app)`.

    Draining leaves discovery at once, so callers stop choosing this instance while it
    still serves; shutdown leaves if draining did not. Raises ValueError now if
    DISCOVERY_URL is not set, so a misconfigured deployment fails at startup.
    """
    if not config.discovery_urls:
        raise ValueError("DISCOVERY_URL is not set; set it to the discovery service's base "
                         "URL, e.g. http://discovery:8761 (a headless Service)")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = service_state(app)
        async with make_http_client(timeout=2.0, transport=transport) as http:
            registrar = None
            if register:
                registration = Registration(
                    app=state.name, instance_id=config.instance_id,
                    host=config.advertise_host, port=config.port,
                    metadata={**(metadata or {}), "version": config.app_version})
                registrar = Registrar(http, config.discovery_urls, registration, resolver)
            cache = RegistryCache(http, config.discovery_urls, resolver) if watch else None
            client = DiscoveryClient(registrar, cache, heartbeat_seconds=config.heartbeat_seconds,
                                     refresh_seconds=config.refresh_seconds)
            app.state.discovery = client
            state.on_drain("leave discovery", client.leave)
            await client.start()
            try:
                yield
            finally:
                await client.stop()

    return lifespan


def discovery_client(app: FastAPI) -> DiscoveryClient:
    """The DiscoveryClient that discovery_lifespan attached to `app`."""
    client = getattr(app.state, "discovery", None)
    if not isinstance(client, DiscoveryClient):
        raise TypeError("no DiscoveryClient on this app: add discovery_lifespan(config)")
    return client
