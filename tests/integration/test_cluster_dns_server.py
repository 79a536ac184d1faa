"""The cluster DNS server on the wire, on loopback: UDP and TCP answers from a zone fed
with the API's JSON (no cluster needed), truncation the way stub resolvers expect it, and
how fast an answer comes from the cache."""

from __future__ import annotations

import socket
import statistics
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from shipyard.domain.cluster_dns import ClusterZone
from shipyard.stack.cluster_dns import ClusterResolver, lookup, start_servers, stop_servers

pytestmark = pytest.mark.integration

NS = "shop"
PEERS = 100  # more addresses than a 512-byte UDP answer holds


def service(name: str, cluster_ip: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS},
            "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def endpoint_slice(service_name: str, addresses: list[str]) -> dict[str, Any]:
    return {"addressType": "IPv4",
            "metadata": {"name": f"{service_name}-x", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}}
                          for a in addresses]}


@pytest.fixture(scope="module")
def resolver() -> ClusterResolver:
    resolver = ClusterResolver(ClusterZone(nameserver="127.0.0.1"))
    resolver.services.replace([service("web", "10.96.0.20"), service("many", "None")])
    resolver.slices.replace([endpoint_slice("many", [f"10.88.1.{i}" for i in range(PEERS)])])
    return resolver


@pytest.fixture(scope="module")
def port(resolver: ClusterResolver) -> Iterator[int]:
    servers = start_servers(resolver, "127.0.0.1", 0)
    yield servers[0].server.server_address[1]
    stop_servers(servers)


def ask(port: int, name: str, qtype: str = "A", *, tcp: bool = False,
        edns: int = 0) -> DNSRecord:
    question = DNSRecord.question(name, qtype)
    if edns:
        question.add_ar(EDNS0(udp_len=edns))
    return DNSRecord.parse(question.send("127.0.0.1", port, tcp=tcp, timeout=5))


def test_a_service_name_is_answered_over_udp(port):
    assert lookup("web.shop.svc.cluster.local", server="127.0.0.1", port=port) == (
        "NOERROR", ["10.96.0.20"])


def test_the_answer_is_authoritative_and_keeps_the_question_as_asked(port):
    reply = ask(port, "Web.Shop.svc.cluster.local")
    assert reply.header.aa == 1 and reply.header.ra == 0
    assert str(reply.q.qname) == "Web.Shop.svc.cluster.local."
    assert str(reply.rr[0].rname) == "Web.Shop.svc.cluster.local."


def test_an_unknown_name_is_nxdomain_and_a_foreign_one_refused(port):
    assert ask(port, "nope.shop.svc.cluster.local").header.rcode == RCODE.NXDOMAIN
    assert ask(port, "example.com").header.rcode == RCODE.REFUSED


def test_a_big_udp_answer_is_truncated_keeping_the_question(port):
    reply = ask(port, "many.shop.svc.cluster.local")
    assert reply.header.tc == 1 and reply.rr == []
    assert str(reply.q.qname) == "many.shop.svc.cluster.local."


def test_edns_raises_the_udp_limit_and_is_answered_with_edns(port):
    reply = ask(port, "web.shop.svc.cluster.local", edns=4096)
    assert any(r.rtype == QTYPE.OPT for r in reply.ar)
    assert ask(port, "many.shop.svc.cluster.local", edns=4096).header.tc == 1  # > 1232 bytes
    small = ask(port, "_http._tcp.web.shop.svc.cluster.local", "SRV", edns=1232)
    assert small.header.tc == 0 and small.rr


def test_tcp_gives_the_whole_answer(port):
    reply = ask(port, "many.shop.svc.cluster.local", tcp=True)
    assert reply.header.tc == 0
    assert len({str(r.rdata) for r in reply.rr}) == PEERS


def test_every_question_of_a_tcp_connection_is_answered(port):
    # glibc sends its A and AAAA questions down one connection.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        for qtype in ("A", "AAAA"):
            packed = DNSRecord.question("web.shop.svc.cluster.local", qtype).pack()
            connection.sendall(struct.pack("!H", len(packed)) + packed)
        replies = []
        for _ in range(2):
            size = struct.unpack("!H", _read(connection, 2))[0]
            replies.append(DNSRecord.parse(_read(connection, size)))
    assert [len(r.rr) for r in replies] == [1, 0]
    assert {r.header.rcode for r in replies} == {RCODE.NOERROR}


def test_a_malformed_packet_is_dropped_and_the_server_goes_on(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b"\x12\x34garbage", ("127.0.0.1", port))
    assert lookup("web.shop.svc.cluster.local", server="127.0.0.1", port=port) == (
        "NOERROR", ["10.96.0.20"])


def test_nothing_is_answered_from_an_unlisted_cache():
    resolver = ClusterResolver(ClusterZone())
    resolver.services.replace([service("web", "10.96.0.20")])  # slices not listed yet
    servers = start_servers(resolver, "127.0.0.1", 0)
    try:
        port = servers[0].server.server_address[1]
        assert lookup("web.shop.svc.cluster.local", server="127.0.0.1", port=port) == (
            "SERVFAIL", [])
        resolver.slices.replace([])
        assert lookup("web.shop.svc.cluster.local", server="127.0.0.1", port=port) == (
            "NOERROR", ["10.96.0.20"])
    finally:
        stop_servers(servers)


def test_a_watch_event_changes_the_next_answer(resolver, port):
    assert lookup("late.shop.svc.cluster.local", server="127.0.0.1",
                  port=port) == ("NXDOMAIN", [])
    resolver.services.apply("ADDED", service("late", "10.96.0.21"))
    assert lookup("late.shop.svc.cluster.local", server="127.0.0.1", port=port) == (
        "NOERROR", ["10.96.0.21"])
    resolver.services.apply("DELETED", service("late", "10.96.0.21"))
    assert lookup("late.shop.svc.cluster.local", server="127.0.0.1",
                  port=port) == ("NXDOMAIN", [])


def answer_times(port: int, questions: list[bytes]) -> tuple[float, float, float]:
    """p50, p99 and max of one client asking ``questions`` one at a time."""
    times = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        for packed in questions:
            start = time.perf_counter()
            udp.sendto(packed, ("127.0.0.1", port))
            udp.recv(4096)
            times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)], times[-1]


def test_an_answer_takes_well_under_a_millisecond(port):
    """Questions asked one at a time (bounded, loopback only): the same one 2000 times
    (answered from the packet cache), and 1024 each asked once (a look-up in the zone)."""
    again = [DNSRecord.question("web.shop.svc.cluster.local").pack()] * 2000
    # Each spelling is other bytes, so none is in the packet cache.
    spellings = ["".join(c.upper() if (i >> n) & 1 else c
                         for n, c in enumerate("webshopsvc")) for i in range(1024)]
    other = [DNSRecord.question(f"{s[:3]}.{s[3:7]}.{s[7:]}.cluster.local").pack()
             for s in spellings]
    for what, questions in (("the same question", again), ("another question", other)):
        p50, p99, worst = answer_times(port, questions)
        print(f"cluster DNS over UDP on loopback, {what}: p50 {p50 * 1e6:.0f} us, "
              f"p99 {p99 * 1e6:.0f} us, max {worst * 1e6:.0f} us")
        # The machine is shared with other work: the median holds the claim, the tail is
        # loose.
        assert p50 < 0.001
        assert p99 < 0.020


def _read(connection: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        assert chunk, "the server closed the connection early"
        data += chunk
    return data
