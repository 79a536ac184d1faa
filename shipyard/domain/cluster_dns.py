"""Cluster DNS as plain data: the records the Kubernetes DNS specification gives Services
and their EndpointSlices, kept one object at a time, and the answer to a question.

What is served (https://github.com/kubernetes/dns/blob/master/docs/specification.md,
schema 1.0.1), all under the cluster domain (``cluster.local``):

- ``<svc>.<ns>.svc`` A/AAAA: the ClusterIPs; for a headless Service every *ready*
  endpoint's address (EndpointSlices' ``ready`` condition; none ready is NXDOMAIN, as the
  spec says); for an ExternalName Service a CNAME.
- ``<host>.<svc>.<ns>.svc`` A/AAAA for each ready endpoint of a headless Service, ``<host>``
  being the endpoint's ``hostname`` or its address with dashes (``10-88-0-5``).
- ``_<port>._<proto>.<svc>.<ns>.svc`` SRV for each named port, with the targets' addresses
  in the additional section; PTR for ClusterIPs and ready headless endpoints.
- ``dns-version`` TXT, the zone's SOA and NS, and the deprecated ``a-b-c-d.<ns>.pod`` A.

A name in the zone with no records is NXDOMAIN, or NODATA when names exist beneath it.
Names outside the zone (and reverse names we hold no record for) are REFUSED: this server
answers for the cluster only and never forwards.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "SCHEMA_VERSION",
    "TTL_SECONDS",
    "ZONE",
    "Answer",
    "ClusterZone",
    "Endpoint",
    "EndpointSlice",
    "Port",
    "Rcode",
    "Record",
    "RecordType",
    "Service",
    "Soa",
    "Srv",
    "records_of",
    "reverse_name",
    "service_records",
    "slice_records",
]

ZONE = "cluster.local"
SCHEMA_VERSION = "1.0.1"
TTL_SECONDS = 5
"""Short, as CoreDNS's default: a pod that goes unready leaves the answers within seconds."""
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MAX_CNAME_HOPS = 8

RecordType = Literal["A", "AAAA", "CNAME", "SRV", "PTR", "TXT", "SOA", "NS"]


class Rcode(StrEnum):
    NOERROR = "NOERROR"
    NXDOMAIN = "NXDOMAIN"
    SERVFAIL = "SERVFAIL"
    REFUSED = "REFUSED"


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Soa:
    mname: str
    rname: str
    serial: int
    refresh: int = 7200
    retry: int = 1800
    expire: int = 86400
    minimum: int = TTL_SECONDS


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record; names are lower-case and carry no trailing dot. ``data`` is
    the address (A, AAAA), the target name (CNAME, PTR, NS), the text (TXT), an
    :class:`Srv` or a :class:`Soa`."""

    name: str
    type: RecordType
    data: str | Srv | Soa
    ttl: int = TTL_SECONDS


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: Rcode
    answers: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()


# -- the API's objects, as much of them as DNS needs ----------------------------------------

@dataclass(frozen=True, slots=True)
class Port:
    name: str
    protocol: str
    """Lower-case, as it appears in SRV names: tcp, udp, sctp."""
    number: int


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    cluster_ips: tuple[str, ...] = ()
    headless: bool = False
    external_name: str = ""
    ports: tuple[Port, ...] = ()

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> Service:
        """The Service of the API's JSON (a v1 Service)."""
        metadata, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        cluster_ips = tuple(spec.get("clusterIPs") or
                            ([spec["clusterIP"]] if spec.get("clusterIP") else []))
        external = spec.get("externalName") if spec.get("type") == "ExternalName" else ""
        return cls(
            namespace=str(metadata.get("namespace", "")).lower(),
            name=str(metadata.get("name", "")).lower(),
            cluster_ips=tuple(ip for ip in cluster_ips if _is_address(ip)),
            headless="None" in cluster_ips and not external,
            external_name=_canonical(str(external or "")),
            ports=_ports(spec.get("ports")),
        )


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    ready: bool = True
    hostname: str = ""


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    namespace: str
    name: str
    service: str
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[Port, ...] = ()

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> EndpointSlice:
        """The slice of the API's JSON (a discovery.k8s.io/v1 EndpointSlice). An endpoint
        whose ``ready`` condition is unset counts as ready, as the API says consumers
        should; FQDN slices hold no addresses DNS can serve and come out empty."""
        metadata = obj.get("metadata") or {}
        endpoints = []
        if obj.get("addressType") in ("IPv4", "IPv6"):
            for endpoint in obj.get("endpoints") or []:
                ready = (endpoint.get("conditions") or {}).get("ready")
                endpoints.append(Endpoint(
                    addresses=tuple(a for a in endpoint.get("addresses") or []
                                    if _is_address(a)),
                    ready=ready is not False,
                    hostname=str(endpoint.get("hostname") or "").lower()))
        return cls(
            namespace=str(metadata.get("namespace", "")).lower(),
            name=str(metadata.get("name", "")),
            service=str((metadata.get("labels") or {}).get(SERVICE_NAME_LABEL, "")).lower(),
            endpoints=tuple(endpoints),
            ports=_ports(obj.get("ports")),
        )


# -- records --------------------------------------------------------------------------------

def service_records(service: Service, zone: str = ZONE) -> list[Record]:
    """The records a Service has of itself: its ClusterIPs' A/AAAA, SRV and PTR, or an
    ExternalName's CNAME. A headless Service's records come from its slices."""
    fqdn = _fqdn(service, zone)
    if service.external_name:
        return [Record(fqdn, "CNAME", service.external_name)]
    if service.headless:
        return []
    records = [_address(fqdn, ip) for ip in service.cluster_ips]
    records += [Record(_srv_name(port, fqdn), "SRV", Srv(0, 100, port.number, fqdn))
                for port in service.ports if port.name]
    records += [Record(reverse_name(ip), "PTR", fqdn) for ip in service.cluster_ips]
    return records


def slice_records(service: Service, endpoint_slice: EndpointSlice,
                  zone: str = ZONE) -> list[Record]:
    """What one EndpointSlice adds to its headless Service: for each ready endpoint an
    address of the Service's name, a name of its own (``<host>.<svc>...``) with its PTR,
    and an SRV per named port. A Service with a ClusterIP takes nothing from its slices."""
    if not service.headless:
        return []
    fqdn = _fqdn(service, zone)
    records: dict[Record, None] = {}
    for endpoint in endpoint_slice.endpoints:
        if not endpoint.ready:
            continue
        for address in endpoint.addresses:
            host = f"{endpoint.hostname or _dashed(address)}.{fqdn}"
            for record in (_address(fqdn, address), _address(host, address),
                           Record(reverse_name(address), "PTR", host)):
                records[record] = None
            for port in endpoint_slice.ports:
                if port.name:
                    records[Record(_srv_name(port, fqdn), "SRV",
                                   Srv(0, 100, port.number, host))] = None
    return list(records)


def records_of(service: Service, slices: Iterable[EndpointSlice],
               zone: str = ZONE) -> list[Record]:
    """Every record of one Service, given its slices (each record once)."""
    records = dict.fromkeys(service_records(service, zone))
    for endpoint_slice in slices:
        records.update(dict.fromkeys(slice_records(service, endpoint_slice, zone)))
    return list(records)


def reverse_name(address: str) -> str:
    """The PTR name of an address: ``5.0.88.10.in-addr.arpa`` for 10.88.0.5."""
    return ipaddress.ip_address(address).reverse_pointer


# -- the zone -------------------------------------------------------------------------------

Source = tuple[str, str, str]
"""Who contributed records: (namespace, service, slice name or "" for the Service)."""
_STATIC: Source = ("", "", "")


class ClusterZone:
    """Every record of the cluster, kept current one Service or EndpointSlice at a time,
    and the answer to any question.

    A change recomputes only what that object contributes (a slice holds at most 100
    endpoints), so a big rollout stays cheap; an answer is a few dictionary look-ups. Not
    thread-safe: the server serialises changes and answers."""

    def __init__(self, zone: str = ZONE, nameserver: str = "") -> None:
        self.zone = _canonical(zone)
        self.serial = 1
        self._services: dict[tuple[str, str], Service] = {}
        self._slices: dict[tuple[str, str], EndpointSlice] = {}
        self._slices_of: dict[tuple[str, str], set[str]] = {}
        self._contributed: dict[Source, tuple[Record, ...]] = {}
        self._owners: dict[str, dict[Source, tuple[Record, ...]]] = {}
        self._names: dict[str, tuple[Record, ...]] = {}
        self._ancestors: Counter[str] = Counter()
        static = [Record(f"dns-version.{self.zone}", "TXT", SCHEMA_VERSION),
                  Record(self.zone, "NS", f"ns.dns.{self.zone}")]
        if nameserver:
            static.append(_address(f"ns.dns.{self.zone}", nameserver))
        self._contribute(_STATIC, static)

    # -- changes ----------------------------------------------------------------------

    def set_services(self, services: Iterable[Service]) -> None:
        """Make ``services`` the whole set (after a list or a relist)."""
        wanted = {(s.namespace, s.name): s for s in services}
        for key in set(self._services) - set(wanted):
            self.remove_service(*key)
        for service in wanted.values():
            self.put_service(service)

    def put_service(self, service: Service) -> None:
        key = (service.namespace, service.name)
        if self._services.get(key) == service:
            return
        self._services[key] = service
        self._refresh_service(key)

    def remove_service(self, namespace: str, name: str) -> None:
        if self._services.pop((namespace, name), None) is not None:
            self._refresh_service((namespace, name))

    def set_slices(self, slices: Iterable[EndpointSlice]) -> None:
        """Make ``slices`` the whole set (after a list or a relist)."""
        wanted = {(s.namespace, s.name): s for s in slices}
        for key in set(self._slices) - set(wanted):
            self.remove_slice(*key)
        for endpoint_slice in wanted.values():
            self.put_slice(endpoint_slice)

    def put_slice(self, endpoint_slice: EndpointSlice) -> None:
        key = (endpoint_slice.namespace, endpoint_slice.name)
        old = self._slices.get(key)
        if old == endpoint_slice:
            return
        if old is not None and old.service != endpoint_slice.service:
            self.remove_slice(*key)
        self._slices[key] = endpoint_slice
        self._slices_of.setdefault((key[0], endpoint_slice.service), set()).add(key[1])
        self._refresh_slice(endpoint_slice)

    def remove_slice(self, namespace: str, name: str) -> None:
        old = self._slices.pop((namespace, name), None)
        if old is None:
            return
        names = self._slices_of.get((namespace, old.service), set())
        names.discard(name)
        if not names:
            self._slices_of.pop((namespace, old.service), None)
        self._contribute((namespace, old.service, name), [])

    def _refresh_service(self, key: tuple[str, str]) -> None:
        service = self._services.get(key)
        self._contribute((*key, ""), service_records(service, self.zone) if service else [])
        for name in self._slices_of.get(key, set()):
            self._refresh_slice(self._slices[(key[0], name)])

    def _refresh_slice(self, endpoint_slice: EndpointSlice) -> None:
        service = self._services.get((endpoint_slice.namespace, endpoint_slice.service))
        records = slice_records(service, endpoint_slice, self.zone) if service else []
        self._contribute((endpoint_slice.namespace, endpoint_slice.service,
                          endpoint_slice.name), records)

    def _contribute(self, source: Source, records: list[Record]) -> None:
        new = tuple(records)
        old = self._contributed.get(source, ())
        if new == old:
            return
        if new:
            self._contributed[source] = new
        else:
            self._contributed.pop(source, None)
        by_name: dict[str, list[Record]] = {}
        for record in new:
            by_name.setdefault(record.name, []).append(record)
        for name in {r.name for r in old} | set(by_name):
            owners = self._owners.setdefault(name, {})
            if not owners:
                self._count_ancestors(name, +1)
            if name in by_name:
                owners[source] = tuple(by_name[name])
            else:
                owners.pop(source, None)
            if owners:
                self._names[name] = tuple(dict.fromkeys(
                    r for held in owners.values() for r in held))
            else:
                del self._owners[name]
                self._names.pop(name, None)
                self._count_ancestors(name, -1)
        self.serial = self.serial % 0xFFFFFFFF + 1

    def _count_ancestors(self, name: str, step: int) -> None:
        if not name.endswith("." + self.zone):
            return
        labels = name[:-len(self.zone) - 1].split(".")
        for start in range(1, len(labels)):
            ancestor = ".".join(labels[start:]) + "." + self.zone
            self._ancestors[ancestor] += step
            if self._ancestors[ancestor] <= 0:
                del self._ancestors[ancestor]

    # -- answers ----------------------------------------------------------------------

    def soa(self) -> Record:
        return Record(self.zone, "SOA", Soa(f"ns.dns.{self.zone}",
                                            f"hostmaster.{self.zone}", self.serial))

    def answer(self, qname: str, qtype: str) -> Answer:
        """The answer to ``qname`` (any case, trailing dot or not) of type ``qtype`` (a
        record type's name; ``ANY`` gives every record of the name)."""
        name = _canonical(qname)
        in_zone = name == self.zone or name.endswith("." + self.zone)
        records = self._records_at(name)
        if not in_zone and not records:
            return Answer(Rcode.REFUSED)
        negative = (self.soa(),) if in_zone else ()
        if not records:
            if name in self._ancestors or self._is_pod_branch(name):
                return Answer(Rcode.NOERROR, authority=negative)
            return Answer(Rcode.NXDOMAIN, authority=negative)
        if qtype == "ANY":
            return Answer(Rcode.NOERROR, records)
        matching = tuple(r for r in records if r.type == qtype)
        if matching:
            return Answer(Rcode.NOERROR, matching, additional=self._srv_targets(matching))
        chain = self._cname_chain(records, qtype)
        if chain:
            return Answer(Rcode.NOERROR, chain)
        return Answer(Rcode.NOERROR, authority=negative)

    def _records_at(self, name: str) -> tuple[Record, ...]:
        if name == self.zone:
            return (self.soa(), *self._names.get(name, ()))
        found = self._names.get(name)
        if found:
            return found
        return self._pod_record(name)

    def _cname_chain(self, records: tuple[Record, ...], qtype: str) -> tuple[Record, ...]:
        """The CNAME at a name, followed within the zone as far as it goes."""
        chain: list[Record] = []
        for _ in range(MAX_CNAME_HOPS):
            cname = next((r for r in records if r.type == "CNAME"), None)
            if cname is None:
                break
            chain.append(cname)
            records = self._records_at(str(cname.data))
            matching = [r for r in records if r.type == qtype]
            if matching:
                return (*chain, *matching)
        return tuple(chain)

    def _srv_targets(self, records: tuple[Record, ...]) -> tuple[Record, ...]:
        targets = dict.fromkeys(r.data.target for r in records if isinstance(r.data, Srv))
        return tuple(r for target in targets for r in self._names.get(target, ())
                     if r.type in ("A", "AAAA"))

    def _pod_record(self, name: str) -> tuple[Record, ...]:
        """``a-b-c-d.<ns>.pod.<zone>``: the deprecated pod A record, for any address."""
        labels = name.split(".")
        if len(labels) < 3 or ".".join(labels[2:]) != f"pod.{self.zone}":
            return ()
        dotted = labels[0].replace("-", ".")
        try:
            address = ipaddress.IPv4Address(dotted)
        except ValueError:
            return ()
        if str(address) != dotted:  # "010-..." and the like are no pod's name
            return ()
        return (Record(name, "A", dotted),)

    def _is_pod_branch(self, name: str) -> bool:
        """``pod.<zone>`` and ``<ns>.pod.<zone>``: names exist beneath them."""
        pods = f"pod.{self.zone}"
        return name == pods or (name.endswith("." + pods) and
                                "." not in name[:-len(pods) - 1])


def _fqdn(service: Service, zone: str) -> str:
    return f"{service.name}.{service.namespace}.svc.{zone}"


def _srv_name(port: Port, fqdn: str) -> str:
    return f"_{port.name}._{port.protocol}.{fqdn}"


def _address(name: str, address: str) -> Record:
    kind: RecordType = "AAAA" if ":" in address else "A"
    return Record(name, kind, address)


def _dashed(address: str) -> str:
    return address.replace(".", "-").replace(":", "-")


def _canonical(name: str) -> str:
    return name.lower().rstrip(".")


def _is_address(text: Any) -> bool:
    try:
        ipaddress.ip_address(str(text))
    except ValueError:
        return False
    return True


def _ports(listed: Any) -> tuple[Port, ...]:
    ports = []
    for port in listed or []:
        number = port.get("port")
        if isinstance(number, int):
            ports.append(Port(str(port.get("name") or "").lower(),
                              str(port.get("protocol") or "TCP").lower(), number))
    return tuple(ports)
