"""Following one kind of Kubernetes object across all namespaces as it changes: list, then
watch from the list's resourceVersion, as client-go's reflector does.

Objects arrive as the API's JSON (plain mappings) and are never turned into the client's
model classes: a busy watch stays cheap, and ``shipyard.domain`` reads them as data. A
watch that breaks resumes from the last version seen; one the API server no longer holds
history for (410 Gone) starts over with a new list, which replaces everything, so an
object deleted meanwhile is not kept.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from shipyard.adapters.kube_client import KubeClient

__all__ = ["ENDPOINT_SLICES", "SERVICES", "EventType", "ObjectWatch", "WatchSink"]

SERVICES = "/api/v1/services"
ENDPOINT_SLICES = "/apis/discovery.k8s.io/v1/endpointslices"

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


class WatchSink(Protocol):
    """Receives what a watch learns."""

    def replace(self, objects: list[dict[str, Any]]) -> None:
        """Every object there is now (after the first list, and after each relist)."""

    def apply(self, event: EventType, obj: dict[str, Any]) -> None:
        """One change; ``obj`` is the object as it now is (as it last was, if deleted)."""


class _Expired(Exception):
    """The API server no longer holds the version we watch from: list again."""


@dataclass
class ObjectWatch:
    """Lists and watches the collection at ``path`` (``SERVICES``, ``ENDPOINT_SLICES``)
    until :meth:`stop`. Each watch call lasts ``watch_seconds`` at most and asks for
    bookmarks, so a quiet collection still moves its version forward."""

    client: KubeClient
    path: str
    on_error: Callable[[str], None] = lambda message: None
    watch_seconds: int = 300
    max_backoff_seconds: float = 10.0
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _response: Any = field(default=None, init=False)

    def run(self, sink: WatchSink) -> None:
        """Keep ``sink`` current until :meth:`stop`; errors are retried with a growing
        pause (up to ``max_backoff_seconds``), never raised, and reported to ``on_error``
        when they differ from the last one (an API server that stays away is one line)."""
        backoff = 0.5
        version = last_error = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._list(sink)
                version = self._watch(sink, version)
                backoff, last_error = 0.5, ""
            except _Expired:
                version = ""
            except (ApiException, HTTPError, OSError, ValueError, KeyError) as err:
                if self._stop.is_set():
                    break
                if str(err) != last_error:
                    self.on_error(f"{self.path}: {err}; retrying")
                    last_error = str(err)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_seconds)

    def stop(self) -> None:
        """End :meth:`run`, interrupting a watch that waits for the next event."""
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()

    def _request(self, query: dict[str, str], read_timeout: float) -> Any:
        api = self.client.api
        method, url, headers, _, _ = api.param_serialize(
            "GET", f"{self.path}?{urlencode(query)}", header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"])
        return api.call_api(method, url, header_params=headers,
                            _request_timeout=(5, read_timeout)).response

    def _list(self, sink: WatchSink) -> str:
        response = self._request({}, 60)
        try:
            body = response.data
        finally:
            response.release_conn()
        if response.status != 200:
            raise ValueError(f"listing: {response.status} {body[:300]!r}")
        listed = json.loads(body)
        sink.replace(list(listed.get("items") or []))
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self, sink: WatchSink, version: str) -> str:
        """One watch call from ``version``; returns the last version seen."""
        response = self._request({"watch": "true", "resourceVersion": version,
                                  "allowWatchBookmarks": "true",
                                  "timeoutSeconds": str(self.watch_seconds)},
                                 self.watch_seconds + 30)
        self._response = response
        try:
            if response.status == 410:
                raise _Expired
            if response.status != 200:
                raise ValueError(f"watching: {response.status} {response.data[:300]!r}")
            for event in _events(response):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Expired
                    raise ValueError(f"watch error: {obj.get('message') or obj}")
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    sink.apply(kind, obj)
                if self._stop.is_set():
                    break
        finally:
            self._response = None
            with contextlib.suppress(Exception):
                response.release_conn()
        return version


def _events(response: Any) -> Iterator[dict[str, Any]]:
    """The watch events of a streamed response, one JSON object per line."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
