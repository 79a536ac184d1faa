"""In-memory service registry with leases, a change log and cheap deltas.

Pure logic: no I/O and no sleeping. Time comes from an injected clock so that lease
expiry is tested by moving a fake clock, and the same code runs on `time.monotonic`.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType

Clock = Callable[[], float]


class Status(StrEnum):
    UP = "UP"
    DOWN = "DOWN"
    STARTING = "STARTING"


class Action(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class Instance:
    """One registered process. `last_renewed_at` is in the registry clock's units."""

    app: str
    instance_id: str
    host: str
    port: int
    status: Status
    metadata: Mapping[str, str]
    last_renewed_at: float


@dataclass(frozen=True)
class Change:
    """The registry moved to `version` because `instance` was added, modified or deleted."""

    version: int
    action: Action
    instance: Instance


@dataclass(frozen=True)
class Snapshot:
    epoch: str
    version: int
    apps: Mapping[str, tuple[Instance, ...]]


@dataclass(frozen=True)
class Delta:
    """Changes after a version. If `full_refresh_required`, `changes` is empty and the
    caller must fetch the whole registry: its version is from another epoch, is ahead of
    ours, or is older than the retained change log."""

    epoch: str
    version: int
    changes: tuple[Change, ...]
    full_refresh_required: bool


class UnknownInstanceError(LookupError):
    """Raised by renew/cancel for an instance that is not (or no longer) registered."""

    def __init__(self, app: str, instance_id: str) -> None:
        super().__init__(f"instance {instance_id!r} of app {app!r} is not registered")
        self.app = app
        self.instance_id = instance_id


class Registry:
    """Thread-safe registry of instances keyed by (app, instance_id).

    Every membership or status change bumps `version` by exactly one and is appended to a
    bounded change log, so `delta(since)` is O(changes) instead of O(registry). Heartbeats
    only extend a lease: they are not changes, otherwise every poll would see every
    instance's heartbeat and deltas would stop being cheap.

    An instance whose lease has lapsed stays visible until `evict_expired` runs; the
    eviction loop is the single authority on removal, so staleness is bounded by
    lease + eviction interval.
    """

    def __init__(self, clock: Clock, lease_seconds: float = 30.0, max_changes: int = 1000) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        if max_changes < 1:
            raise ValueError(f"max_changes must be at least 1, got {max_changes}")
        self._clock = clock
        self.lease_seconds = lease_seconds
        # A fresh epoch per process: versions restart at 0, so a client's `since` from
        # another process (or another replica) must never be read as one of ours.
        self.epoch = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._apps: dict[str, dict[str, Instance]] = {}
        self._version = 0
        self._changes: deque[Change] = deque(maxlen=max_changes)

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def register(
        self,
        app: str,
        instance_id: str,
        host: str,
        port: int,
        status: Status = Status.UP,
        metadata: Mapping[str, str] | None = None,
    ) -> Instance:
        """Add or replace an instance and start a fresh lease. Always a change."""
        instance = Instance(
            app=app,
            instance_id=instance_id,
            host=host,
            port=port,
            status=status,
            # Copy so later mutation of the caller's dict cannot change the registry.
            metadata=MappingProxyType(dict(metadata or {})),
            last_renewed_at=self._clock(),
        )
        with self._lock:
            instances = self._apps.setdefault(app, {})
            action = Action.MODIFIED if instance_id in instances else Action.ADDED
            instances[instance_id] = instance
            self._record(action, instance)
        return instance

    def renew(self, app: str, instance_id: str) -> Instance:
        """Extend the lease of a registered instance; raises UnknownInstanceError if absent."""
        with self._lock:
            current = self._get(app, instance_id)
            renewed = replace(current, last_renewed_at=self._clock())
            self._apps[app][instance_id] = renewed
        return renewed

    def cancel(self, app: str, instance_id: str) -> Instance:
        """Remove an instance on its own request; raises UnknownInstanceError if absent."""
        with self._lock:
            removed = self._get(app, instance_id)
            self._remove(removed)
        return removed

    def evict_expired(self) -> tuple[Instance, ...]:
        """Remove every instance not renewed for more than `lease_seconds`; return them."""
        now = self._clock()
        with self._lock:
            expired = [
                instance
                for instances in self._apps.values()
                for instance in instances.values()
                if now - instance.last_renewed_at > self.lease_seconds
            ]
            for instance in expired:
                self._remove(instance)
        return tuple(expired)

    def snapshot(self) -> Snapshot:
        """The whole registry at one version (apps sorted, instances sorted by id)."""
        with self._lock:
            apps = {
                app: tuple(instances[key] for key in sorted(instances))
                for app, instances in sorted(self._apps.items())
            }
            return Snapshot(self.epoch, self._version, MappingProxyType(apps))

    def instances_of(self, app: str) -> tuple[Instance, ...]:
        """Instances of one app, sorted by id; empty if the app is unknown."""
        with self._lock:
            instances = self._apps.get(app, {})
            return tuple(instances[key] for key in sorted(instances))

    def count(self) -> int:
        with self._lock:
            return sum(len(instances) for instances in self._apps.values())

    def delta(self, since: int, epoch: str | None = None) -> Delta:
        """Changes with version > `since`, oldest first (see Delta for the refresh rule)."""
        with self._lock:
            # Once the log is full its oldest entry is the first version we still hold,
            # so `since` must be at least the version just before it.
            oldest_servable = (
                self._changes[0].version - 1 if len(self._changes) == self._changes.maxlen else 0
            )
            stale = (epoch is not None and epoch != self.epoch) or not (
                oldest_servable <= since <= self._version
            )
            if stale:
                return Delta(self.epoch, self._version, (), full_refresh_required=True)
            changes = tuple(change for change in self._changes if change.version > since)
            return Delta(self.epoch, self._version, changes, full_refresh_required=False)

    # Helpers below assume self._lock is held.

    def _get(self, app: str, instance_id: str) -> Instance:
        try:
            return self._apps[app][instance_id]
        except KeyError:
            raise UnknownInstanceError(app, instance_id) from None

    def _remove(self, instance: Instance) -> None:
        instances = self._apps[instance.app]
        del instances[instance.instance_id]
        if not instances:
            # Drop empty apps so the registry does not grow with every app ever seen.
            del self._apps[instance.app]
        self._record(Action.DELETED, instance)

    def _record(self, action: Action, instance: Instance) -> None:
        self._version += 1
        self._changes.append(Change(self._version, action, instance))
