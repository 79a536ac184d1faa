"""The local cluster's DNS server: Kubernetes' cluster DNS for the pods of the real node,
as CoreDNS's ``kubernetes`` plugin would give it, in one Python process.

It watches Services and EndpointSlices (``shipyard.adapters.kube_watch``) into a
:class:`~shipyard.domain.cluster_dns.ClusterZone` and answers from it over UDP and TCP:
no API call per question, so an answer costs a dictionary look-up and dnslib's packing.
Names outside ``cluster.local`` are refused, never forwarded: nothing leaves the machine.
Until both collections are listed the answer is SERVFAIL, so a pod never takes an empty
cache for the truth.

The kubernetes stack component runs it (:class:`ClusterDNSProcess`) as
``python -m shipyard.stack.cluster_dns`` on the node's address, where pods reach it, with
an identity that may only list and watch Services and EndpointSlices.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from dnslib import (
    AAAA,
    CLASS,
    CNAME,
    EDNS0,
    NS,
    OPCODE,
    PTR,
    QTYPE,
    RCODE,
    RR,
    SOA,
    SRV,
    TXT,
    A,
    DNSError,
    DNSHeader,
    DNSRecord,
)
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer, TCPServer

from shipyard.adapters.kube_client import KubeClient
from shipyard.adapters.kube_watch import ENDPOINT_SLICES, SERVICES, EventType, ObjectWatch
from shipyard.adapters.pki import ClientIdentity
from shipyard.domain.cluster_dns import (
    ZONE,
    Answer,
    ClusterZone,
    EndpointSlice,
    Record,
    Service,
    Soa,
    Srv,
)

__all__ = ["DNS_PORT", "IDENTITY", "RBAC", "ClusterDNSProcess", "ClusterResolver", "lookup",
           "main", "serve", "start_servers", "stop_servers"]

DNS_PORT = 53
PLAIN_UDP_LIMIT = 512
EDNS_UDP_LIMIT = 1232
"""The largest UDP answer we send to a client that offers EDNS (the DNS flag day's
figure): bigger answers are truncated and the client asks again over TCP."""
TCP_IDLE_SECONDS = 10
PACKET_CACHE_SIZE = 10000

IDENTITY = ClientIdentity("cluster-dns", "system:shipyard:cluster-dns")
RBAC: tuple[dict[str, Any], ...] = (
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
     "metadata": {"name": "shipyard:cluster-dns"},
     "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
               {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                "verbs": ["list", "watch"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
     "metadata": {"name": "shipyard:cluster-dns"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                 "name": "shipyard:cluster-dns"},
     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                   "name": IDENTITY.user}]},
)
"""What the server may do: list and watch Services and EndpointSlices, nothing else."""
SOURCES = ("shipyard/domain/cluster_dns.py", "shipyard/adapters/kube_watch.py",
           "shipyard/stack/cluster_dns.py")
"""The code the server runs: a change to it restarts the server on the next ``up``."""


class ClusterResolver(BaseResolver):  # type: ignore[misc]
    """Answers questions from a :class:`ClusterZone` that the watches keep current."""

    def __init__(self, zone: ClusterZone) -> None:
        self.zone = zone
        self._lock = threading.Lock()
        self._listed: set[str] = set()
        self._packets: dict[tuple[str, bytes], tuple[int, bytes]] = {}
        self.services = _Sink(self, "services", self._put_service, self._set_services)
        self.slices = _Sink(self, "endpointslices", self._put_slice, self._set_slices)

    @property
    def synced(self) -> bool:
        """Whether Services and EndpointSlices have both been listed."""
        return self._listed >= {"services", "endpointslices"}

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply(ra=0, aa=1)
        if request.header.opcode != OPCODE.QUERY:
            reply.header.rcode = RCODE.NOTIMP
            return reply
        if len(request.questions) != 1:
            reply.header.rcode = RCODE.FORMERR
            return reply
        question = request.q
        if question.qclass not in (CLASS.IN, getattr(CLASS, "*")):
            reply.header.rcode = RCODE.REFUSED
            return reply
        with self._lock:
            if not self.synced:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            answer = self.zone.answer(str(question.qname), QTYPE[question.qtype])
        _fill(reply, answer, question.qname)
        if request.ar and any(r.rtype == QTYPE.OPT for r in request.ar):
            reply.add_ar(EDNS0(udp_len=EDNS_UDP_LIMIT))
        return reply

    def packed_answer(self, data: bytes, protocol: str,
                      build: Callable[[DNSRecord], bytes]) -> bytes:
        """The answer to the packet ``data`` as sent back over ``protocol``: ``build``
        of the parsed question, or the same answer given before to the same bytes (bar
        the message id) while the zone has not changed since."""
        key = (protocol, data[2:])
        # Both read before the answer is made: a cached answer never outlives a change
        # made after it, nor one from before the listing (SERVFAIL) its end.
        cacheable, serial = self.synced, self.zone.serial
        known = self._packets.get(key)
        if known is not None and known[0] == serial:
            return data[:2] + known[1]
        packed = build(DNSRecord.parse(data))
        if cacheable:
            if len(self._packets) >= PACKET_CACHE_SIZE:
                self._packets.clear()
            self._packets[key] = (serial, packed[2:])
        return packed

    def _set_services(self, objects: list[dict[str, Any]]) -> None:
        self.zone.set_services(Service.from_api(o) for o in objects)

    def _put_service(self, event: EventType, obj: dict[str, Any]) -> None:
        service = Service.from_api(obj)
        if event == "DELETED":
            self.zone.remove_service(service.namespace, service.name)
        else:
            self.zone.put_service(service)

    def _set_slices(self, objects: list[dict[str, Any]]) -> None:
        self.zone.set_slices(EndpointSlice.from_api(o) for o in objects)

    def _put_slice(self, event: EventType, obj: dict[str, Any]) -> None:
        endpoint_slice = EndpointSlice.from_api(obj)
        if event == "DELETED":
            self.zone.remove_slice(endpoint_slice.namespace, endpoint_slice.name)
        else:
            self.zone.put_slice(endpoint_slice)


class _Sink:
    """What one watch feeds: changes go into the zone under the resolver's lock."""

    def __init__(self, resolver: ClusterResolver, kind: str,
                 apply: Callable[[EventType, dict[str, Any]], None],
                 replace: Callable[[list[dict[str, Any]]], None]) -> None:
        self._resolver, self._kind = resolver, kind
        self._apply, self._replace = apply, replace

    def replace(self, objects: list[dict[str, Any]]) -> None:
        with self._resolver._lock:
            self._replace(objects)
            self._resolver._listed.add(self._kind)
        _log(f"listed {len(objects)} {self._kind}")

    def apply(self, event: EventType, obj: dict[str, Any]) -> None:
        with self._resolver._lock:
            self._apply(event, obj)


def _fill(reply: DNSRecord, answer: Answer, asked: Any) -> None:
    reply.header.rcode = getattr(RCODE, answer.rcode.value)
    name = str(asked).lower().rstrip(".")
    for record in answer.answers:
        # The name as asked, case and all: some resolvers check it (DNS 0x20).
        reply.add_answer(_rr(record, asked if record.name == name else record.name))
    for record in answer.authority:
        reply.add_auth(_rr(record, record.name))
    for record in answer.additional:
        reply.add_ar(_rr(record, record.name))


def _rr(record: Record, name: Any) -> RR:
    return RR(name, getattr(QTYPE, record.type), rdata=_rdata(record), ttl=record.ttl)


@functools.lru_cache(maxsize=65536)
def _rdata(record: Record) -> Any:
    data = record.data
    if isinstance(data, Srv):
        return SRV(data.priority, data.weight, data.port, data.target)
    if isinstance(data, Soa):
        return SOA(data.mname, data.rname,
                   (data.serial, data.refresh, data.retry, data.expire, data.minimum))
    kinds: dict[str, Callable[[str], Any]] = {"A": A, "AAAA": AAAA, "CNAME": CNAME,
                                              "PTR": PTR, "NS": NS, "TXT": TXT}
    return kinds[record.type](data)


class _Handler(DNSHandler):  # type: ignore[misc]
    """dnslib's handler, made to answer every question of a TCP connection (glibc sends
    its A and AAAA questions down one) and to truncate UDP answers the client cannot take
    (keeping the question, which glibc matches the answer against)."""

    def handle(self) -> None:
        if self.server.socket_type != socket.SOCK_STREAM:
            super().handle()
            return
        self.protocol = "tcp"
        self.request.settimeout(TCP_IDLE_SECONDS)
        with contextlib.suppress(OSError):
            while True:
                size = self._read_exactly(2)
                if size is None:
                    return
                data = self._read_exactly(struct.unpack("!H", size)[0])
                if data is None:
                    return
                try:
                    answer = self.get_reply(data)
                except DNSError as err:
                    self.server.logger.log_error(self, err)
                    return
                self.request.sendall(struct.pack("!H", len(answer)) + answer)

    def _read_exactly(self, count: int) -> bytes | None:
        data = b""
        while len(data) < count:
            chunk = self.request.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def get_reply(self, data: bytes) -> bytes:
        resolver: ClusterResolver = self.server.resolver
        return resolver.packed_answer(data, self.protocol, self._answer)

    def _answer(self, request: DNSRecord) -> bytes:
        reply = self.server.resolver.resolve(request, self)
        packed: bytes = reply.pack()
        if self.protocol == "udp":
            offered = max((r.edns_len for r in request.ar if r.rtype == QTYPE.OPT),
                          default=0)
            limit = min(max(offered, PLAIN_UDP_LIMIT), EDNS_UDP_LIMIT)
            if len(packed) > limit:
                truncated = DNSRecord(DNSHeader(id=reply.header.id,
                                                bitmap=reply.header.bitmap, tc=1),
                                      q=reply.q)
                packed = truncated.pack()
        return packed


class _UDPServer(socketserver.UDPServer):
    """Answers one datagram after another in the server's thread: an answer takes tens
    of microseconds, less than starting a thread for it would."""

    allow_reuse_address = True


class _TCPServer(TCPServer):  # type: ignore[misc]
    """dnslib's: a thread per connection. A longer queue of connections waiting to be
    accepted than socketserver's five: truncated answers send clients here in bursts."""

    request_queue_size = 128


@dataclass(frozen=True, slots=True)
class ClusterDNSProcess:
    """How the stack runs the server: the command, its environment, the fingerprint of
    what it runs (the stack restarts it when that changes) and whether it answers."""

    kubeconfig: Path
    address: str
    port: int = DNS_PORT

    @property
    def source_root(self) -> Path:
        return Path(__file__).resolve().parents[2]

    def argv(self) -> list[str]:
        """The command, its program first (the interpreter running this code)."""
        return [sys.executable, "-m", __name__, f"--kubeconfig={self.kubeconfig}",
                f"--address={self.address}", f"--port={self.port}"]

    def env(self) -> dict[str, str]:
        """This environment, with the checkout that holds this code first on the path, so
        the server runs the code of the ``shipyard up`` that started it."""
        path = os.pathsep.join(p for p in (str(self.source_root),
                                           os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path}

    def fingerprint(self) -> str:
        digest = hashlib.sha256("\0".join(self.argv()).encode())
        digest.update(metadata.version("dnslib").encode())
        for source in SOURCES:
            digest.update((self.source_root / source).read_bytes())
        return digest.hexdigest()

    def answering(self) -> bool:
        """Whether the server answers, from a listed cache (the API server's own Service
        resolves)."""
        answer = lookup("kubernetes.default.svc.cluster.local", server=self.address,
                        port=self.port, timeout=1.0)
        return answer is not None and answer[0] == "NOERROR" and bool(answer[1])


def serve(kubeconfig: Path, address: str, port: int = DNS_PORT, zone: str = ZONE) -> None:
    """Answer for ``zone`` on ``address``:``port`` (UDP and TCP) until SIGTERM or SIGINT."""
    kube = KubeClient.from_kubeconfig(kubeconfig)
    resolver = ClusterResolver(ClusterZone(zone, nameserver=address))
    watches = [(ObjectWatch(kube, SERVICES, on_error=_log), resolver.services),
               (ObjectWatch(kube, ENDPOINT_SLICES, on_error=_log), resolver.slices)]
    for watch, sink in watches:
        threading.Thread(target=watch.run, args=(sink,), daemon=True,
                         name=f"watch {watch.path}").start()
    servers = start_servers(resolver, address, port)
    _log(f"answering for {zone} on {address}:{port} (udp, tcp)")
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    for watch, _ in watches:
        watch.stop()
    stop_servers(servers)
    _log("stopped")


def start_servers(resolver: ClusterResolver, address: str, port: int) -> list[DNSServer]:
    """UDP and TCP servers for ``resolver`` on ``address``:``port``, answering in
    threads of their own (``port`` 0: a free port, the same for both)."""
    logger = DNSLogger(log="error", prefix=False, logf=_log)
    for attempt in range(20):
        udp = DNSServer(resolver, address=address, port=port, logger=logger,
                        handler=_Handler, server=_UDPServer)
        try:
            tcp = DNSServer(resolver, address=address, port=port or udp.server.server_address[1],
                            tcp=True, logger=logger, handler=_Handler, server=_TCPServer)
            break
        except OSError:
            udp.server.server_close()
            if port or attempt == 19:  # a free UDP port may be taken for TCP: try another
                raise
    for server in (udp, tcp):
        server.start_thread()
    return [udp, tcp]


def stop_servers(servers: Sequence[DNSServer]) -> None:
    for server in servers:
        server.stop()
        server.server.server_close()


def lookup(name: str, qtype: str = "A", *, server: str, port: int = DNS_PORT,
           timeout: float = 2.0) -> tuple[str, list[str]] | None:
    """Ask ``server`` one question over UDP: the answer's rcode and its records' data as
    text, or None when nothing answers in time."""
    question = DNSRecord.question(name, qtype)
    try:
        answer = DNSRecord.parse(question.send(server, port, timeout=timeout))
    except (OSError, DNSError):
        return None
    return RCODE[answer.header.rcode], [str(r.rdata) for r in answer.rr]


def _log(line: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shipyard.stack.cluster_dns",
                                     description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=DNS_PORT)
    parser.add_argument("--zone", default=ZONE)
    args = parser.parse_args(argv)
    serve(args.kubeconfig, args.address, args.port, args.zone)


if __name__ == "__main__":
    main()
