"""The cluster's pods for Prometheus's HTTP discovery, served on loopback.

``python -m shipyard.adapters.pod_discovery --kubeconfig FILE --listen 127.0.0.1:PORT``
answers ``GET /targets`` with every pod of the cluster as target groups labelled as
Kubernetes discovery labels them (:mod:`shipyard.domain.pod_targets`). Each answer lists
the pods afresh (one API call; answers within a second share it), so a pod Prometheus
learns of is at most its ``refresh_interval`` old. An API server that does not answer is
a 503 with the reason: Prometheus keeps its last targets meanwhile.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from shipyard.adapters.kube_client import KubeClient, KubeError
from shipyard.domain.pod_targets import pod_targets

__all__ = ["PodDiscovery", "main"]

CACHE_SECONDS = 1.0


class PodDiscovery:
    """Lists the cluster's pods through ``client``, at most once per ``CACHE_SECONDS``."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._at = -CACHE_SECONDS
        self._body = b"[]"

    def targets(self) -> bytes:
        """The target groups as JSON; raises KubeError when the pods cannot be listed."""
        with self._lock:
            if time.monotonic() - self._at < CACHE_SECONDS:
                return self._body
            status, answer = self.client.call("GET", "/api/v1/pods", timeout=10)
            if status != 200 or not isinstance(answer, dict):
                raise KubeError(f"listing pods: {status} {str(answer)[:200]}", status)
            self._body = json.dumps(pod_targets(answer.get("items") or [])).encode()
            self._at = time.monotonic()
            return self._body


def _handler(discovery: PodDiscovery) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/targets":
                self._answer(404, b'{"error": "GET /targets"}')
                return
            try:
                body = discovery.targets()
            except KubeError as err:
                self._answer(503, json.dumps({"error": str(err)}).encode())
                return
            self._answer(200, body)

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per refresh would fill the log

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--listen", default="127.0.0.1:9091",
                        help="loopback address and port to answer on")
    args = parser.parse_args(argv)
    host, _, port = str(args.listen).rpartition(":")
    if host not in ("127.0.0.1", "::1", "localhost"):
        parser.error(f"--listen {args.listen}: only a loopback address")
    discovery = PodDiscovery(KubeClient.from_kubeconfig(args.kubeconfig))
    server = ThreadingHTTPServer((host, int(port)), _handler(discovery))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
