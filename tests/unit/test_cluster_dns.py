"""Cluster DNS over plain data: the Kubernetes DNS specification's records for Services and
EndpointSlices, kept one object at a time, and the answers to questions."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.domain.cluster_dns import (
    ClusterZone,
    Endpoint,
    EndpointSlice,
    Port,
    Rcode,
    Record,
    Service,
    Soa,
    Srv,
    records_of,
    reverse_name,
)

NS = "shop"
WEB = Service(NS, "web", cluster_ips=("10.96.0.20",), ports=(Port("http", "tcp", 80),))
PEERS = Service(NS, "web-peers", headless=True, ports=(Port("http", "tcp", 8080),))


def endpoint_slice(name: str, *endpoints: Endpoint, service: str = "web-peers",
                   ports: tuple[Port, ...] = (Port("http", "tcp", 8080),)) -> EndpointSlice:
    return EndpointSlice(NS, name, service, endpoints, ports)


def ready(address: str, hostname: str = "") -> Endpoint:
    return Endpoint((address,), True, hostname)


def unready(address: str) -> Endpoint:
    return Endpoint((address,), False)


@pytest.fixture
def zone() -> ClusterZone:
    zone = ClusterZone(nameserver="10.200.0.1")
    zone.set_services([WEB, PEERS])
    zone.set_slices([endpoint_slice("web-peers-a", ready("10.88.0.5"), ready("10.88.0.6"),
                                    unready("10.88.0.7"))])
    return zone


def addresses(zone: ClusterZone, name: str, qtype: str = "A") -> list[str]:
    answer = zone.answer(name, qtype)
    assert answer.rcode is Rcode.NOERROR, answer
    return sorted(str(r.data) for r in answer.answers if r.type == qtype)


# -- reading the API's objects ---------------------------------------------------------------

def api_service(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "Web", "namespace": NS}, "spec": spec}


def test_a_cluster_ip_service_is_read_from_the_api():
    service = Service.from_api(api_service(
        type="ClusterIP", clusterIP="10.96.0.20", clusterIPs=["10.96.0.20"],
        ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
               {"port": 9090}]))
    assert service == Service(NS, "web", ("10.96.0.20",), False, "",
                              (Port("http", "tcp", 80), Port("", "tcp", 9090)))


def test_a_headless_service_is_read_from_the_api():
    service = Service.from_api(api_service(clusterIP="None", clusterIPs=["None"]))
    assert service.headless and service.cluster_ips == ()


def test_an_external_name_service_is_read_from_the_api():
    service = Service.from_api(api_service(type="ExternalName", externalName="DB.Example.com."))
    assert service.external_name == "db.example.com" and not service.headless


def test_an_endpoint_slice_is_read_with_its_ready_conditions():
    read = EndpointSlice.from_api({
        "addressType": "IPv4",
        "metadata": {"name": "web-peers-x1", "namespace": NS,
                     "labels": {"kubernetes.io/service-name": "web-peers"}},
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.88.0.5"], "conditions": {"ready": True}},
            {"addresses": ["10.88.0.6"], "conditions": {"ready": False, "terminating": True}},
            {"addresses": ["10.88.0.7"], "conditions": {}, "hostname": "Pet-0"},
        ]})
    assert read == endpoint_slice("web-peers-x1", ready("10.88.0.5"), unready("10.88.0.6"),
                                  ready("10.88.0.7", "pet-0"))
    assert read.name == "web-peers-x1"


def test_an_fqdn_slice_has_no_addresses_to_serve():
    read = EndpointSlice.from_api({"addressType": "FQDN", "metadata": {
        "name": "x", "namespace": NS}, "endpoints": [{"addresses": ["db.example.com"]}]})
    assert read.endpoints == ()


# -- records ----------------------------------------------------------------------------------

def test_a_cluster_ip_service_has_its_address_srv_and_ptr():
    fqdn = "web.shop.svc.cluster.local"
    assert records_of(WEB, []) == [
        Record(fqdn, "A", "10.96.0.20"),
        Record(f"_http._tcp.{fqdn}", "SRV", Srv(0, 100, 80, fqdn)),
        Record("20.0.96.10.in-addr.arpa", "PTR", fqdn),
    ]


def test_a_cluster_ip_service_ignores_its_endpoints():
    assert records_of(WEB, [endpoint_slice("web-a", ready("10.88.0.5"), service="web")]) == \
        records_of(WEB, [])


def test_a_headless_service_has_a_record_per_ready_endpoint_and_a_name_for_each():
    fqdn = "web-peers.shop.svc.cluster.local"
    records = records_of(PEERS, [endpoint_slice("a", ready("10.88.0.5", "pet-0"),
                                                unready("10.88.0.7"))])
    assert records == [
        Record(fqdn, "A", "10.88.0.5"),
        Record(f"pet-0.{fqdn}", "A", "10.88.0.5"),
        Record("5.0.88.10.in-addr.arpa", "PTR", f"pet-0.{fqdn}"),
        Record(f"_http._tcp.{fqdn}", "SRV", Srv(0, 100, 8080, f"pet-0.{fqdn}")),
    ]


def test_an_endpoint_without_hostname_is_named_by_its_dashed_address():
    names = {r.name for r in records_of(PEERS, [endpoint_slice("a", ready("10.88.0.5"))])}
    assert "10-88-0-5.web-peers.shop.svc.cluster.local" in names


def test_an_address_in_two_slices_is_served_once():
    records = records_of(PEERS, [endpoint_slice("a", ready("10.88.0.5")),
                                 endpoint_slice("b", ready("10.88.0.5"))])
    assert len([r for r in records if r.name == "web-peers.shop.svc.cluster.local"]) == 1


def test_an_ipv6_endpoint_gets_aaaa_and_an_ip6_arpa_ptr():
    records = records_of(PEERS, [endpoint_slice("a", ready("fd00::5"))])
    assert Record("web-peers.shop.svc.cluster.local", "AAAA", "fd00::5") in records
    assert any(r.type == "PTR" and r.name == reverse_name("fd00::5") for r in records)
    assert reverse_name("fd00::5").endswith(".ip6.arpa")


# -- answers ---------------------------------------------------------------------------------

def test_a_service_name_resolves_to_its_cluster_ip(zone):
    assert addresses(zone, "web.shop.svc.cluster.local") == ["10.96.0.20"]


def test_names_are_case_insensitive_and_may_end_with_a_dot(zone):
    assert addresses(zone, "WEB.Shop.svc.Cluster.Local.") == ["10.96.0.20"]


def test_a_headless_name_resolves_to_every_ready_endpoint_and_no_other(zone):
    assert addresses(zone, "web-peers.shop.svc.cluster.local") == ["10.88.0.5", "10.88.0.6"]


def test_a_headless_service_without_ready_endpoints_is_nxdomain(zone):
    zone.put_slice(endpoint_slice("web-peers-a", unready("10.88.0.5")))
    assert zone.answer("web-peers.shop.svc.cluster.local", "A").rcode is Rcode.NXDOMAIN


def test_an_endpoint_that_becomes_ready_joins_the_answer(zone):
    zone.put_slice(endpoint_slice("web-peers-a", ready("10.88.0.5"), ready("10.88.0.6"),
                                  ready("10.88.0.7")))
    assert addresses(zone, "web-peers.shop.svc.cluster.local") == [
        "10.88.0.5", "10.88.0.6", "10.88.0.7"]


def test_endpoints_of_several_slices_are_all_served(zone):
    zone.put_slice(endpoint_slice("web-peers-b", ready("10.88.0.9")))
    assert addresses(zone, "web-peers.shop.svc.cluster.local") == [
        "10.88.0.5", "10.88.0.6", "10.88.0.9"]
    zone.remove_slice(NS, "web-peers-a")
    assert addresses(zone, "web-peers.shop.svc.cluster.local") == ["10.88.0.9"]


def test_a_slice_seen_before_its_service_counts_once_the_service_arrives():
    zone = ClusterZone()
    zone.put_slice(endpoint_slice("web-peers-a", ready("10.88.0.5")))
    assert zone.answer("web-peers.shop.svc.cluster.local", "A").rcode is Rcode.NXDOMAIN
    zone.put_service(PEERS)
    assert addresses(zone, "web-peers.shop.svc.cluster.local") == ["10.88.0.5"]


def test_a_deleted_service_is_nxdomain_and_leaves_nothing_behind(zone):
    zone.remove_service(NS, "web-peers")
    zone.remove_service(NS, "web")
    assert zone.answer("web.shop.svc.cluster.local", "A").rcode is Rcode.NXDOMAIN
    assert zone.answer("5.0.88.10.in-addr.arpa", "PTR").rcode is Rcode.REFUSED
    assert zone.answer("shop.svc.cluster.local", "A").rcode is Rcode.NXDOMAIN


def test_a_service_turned_headless_serves_its_endpoints():
    zone = ClusterZone()
    zone.put_service(Service(NS, "web-peers", cluster_ips=("10.96.0.30",)))
    zone.put_slice(endpoint_slice("web-peers-a", ready("10.88.0.5")))
    assert addresses(zone, "web-peers.shop.svc.cluster.local") == ["10.96.0.30"]
    zone.put_service(PEERS)
    assert addresses(zone, "web-peers.shop.svc.cluster.local") == ["10.88.0.5"]


def test_a_relist_drops_what_is_gone(zone):
    zone.set_services([WEB])
    zone.set_slices([])
    assert zone.answer("web-peers.shop.svc.cluster.local", "A").rcode is Rcode.NXDOMAIN
    assert addresses(zone, "web.shop.svc.cluster.local") == ["10.96.0.20"]


def test_an_unknown_name_in_the_zone_is_nxdomain_with_the_soa(zone):
    answer = zone.answer("nope.shop.svc.cluster.local", "A")
    assert answer.rcode is Rcode.NXDOMAIN
    assert [r.type for r in answer.authority] == ["SOA"]


def test_a_name_with_no_record_of_the_type_asked_is_nodata(zone):
    answer = zone.answer("web.shop.svc.cluster.local", "AAAA")
    assert (answer.rcode, answer.answers) == (Rcode.NOERROR, ())
    assert [r.type for r in answer.authority] == ["SOA"]


@pytest.mark.parametrize("name", ["shop.svc.cluster.local", "svc.cluster.local",
                                  "_tcp.web.shop.svc.cluster.local", "pod.cluster.local",
                                  "shop.pod.cluster.local"])
def test_a_name_with_names_beneath_it_is_nodata_not_nxdomain(zone, name):
    answer = zone.answer(name, "A")
    assert (answer.rcode, answer.answers) == (Rcode.NOERROR, ())


@pytest.mark.parametrize("name", ["example.com", "kubernetes.default.svc.cluster.local.example",
                                  "cluster", "1.1.168.192.in-addr.arpa"])
def test_a_name_outside_the_cluster_is_refused(zone, name):
    assert zone.answer(name, "A").rcode is Rcode.REFUSED


def test_srv_names_each_target_with_its_address_in_the_additional_section(zone):
    answer = zone.answer("_http._tcp.web-peers.shop.svc.cluster.local", "SRV")
    targets = sorted(r.data.target for r in answer.answers if isinstance(r.data, Srv))
    assert targets == ["10-88-0-5.web-peers.shop.svc.cluster.local",
                       "10-88-0-6.web-peers.shop.svc.cluster.local"]
    assert {r.name: r.data for r in answer.additional} == {
        "10-88-0-5.web-peers.shop.svc.cluster.local": "10.88.0.5",
        "10-88-0-6.web-peers.shop.svc.cluster.local": "10.88.0.6"}
    assert {r.data.port for r in answer.answers if isinstance(r.data, Srv)} == {8080}


def test_a_cluster_ip_srv_points_at_the_service_on_its_port(zone):
    answer = zone.answer("_http._tcp.web.shop.svc.cluster.local", "SRV")
    assert [r.data for r in answer.answers] == [Srv(0, 100, 80, "web.shop.svc.cluster.local")]
    assert [r.data for r in answer.additional] == ["10.96.0.20"]


def test_a_cluster_ip_has_a_ptr_back_to_its_service(zone):
    answer = zone.answer("20.0.96.10.in-addr.arpa.", "PTR")
    assert [r.data for r in answer.answers] == ["web.shop.svc.cluster.local"]


def test_an_external_name_answers_with_its_cname():
    zone = ClusterZone()
    zone.put_service(Service(NS, "db", external_name="db.example.com"))
    answer = zone.answer("db.shop.svc.cluster.local", "A")
    assert answer.rcode is Rcode.NOERROR
    assert [(r.type, r.data) for r in answer.answers] == [("CNAME", "db.example.com")]


def test_a_cname_within_the_cluster_is_followed(zone):
    zone.put_service(Service(NS, "www", external_name="web.shop.svc.cluster.local"))
    answer = zone.answer("www.shop.svc.cluster.local", "A")
    assert [(r.type, r.data) for r in answer.answers] == [
        ("CNAME", "web.shop.svc.cluster.local"), ("A", "10.96.0.20")]


def test_a_cname_loop_ends():
    zone = ClusterZone()
    zone.put_service(Service(NS, "a", external_name="b.shop.svc.cluster.local"))
    zone.put_service(Service(NS, "b", external_name="a.shop.svc.cluster.local"))
    answer = zone.answer("a.shop.svc.cluster.local", "A")
    assert answer.rcode is Rcode.NOERROR and len(answer.answers) <= 8


def test_the_schema_version_is_published(zone):
    assert [r.data for r in zone.answer("dns-version.cluster.local", "TXT").answers] == ["1.0.1"]


def test_the_zone_apex_has_soa_and_ns_and_the_nameserver_its_address(zone):
    soa = zone.answer("cluster.local", "SOA").answers
    assert len(soa) == 1 and isinstance(soa[0].data, Soa)
    assert [r.data for r in zone.answer("cluster.local", "NS").answers] == \
        ["ns.dns.cluster.local"]
    assert addresses(zone, "ns.dns.cluster.local") == ["10.200.0.1"]


def test_the_soa_serial_moves_when_the_records_change(zone):
    before = zone.serial
    zone.put_service(WEB)  # the same Service again: nothing changes
    assert zone.serial == before
    zone.put_slice(endpoint_slice("web-peers-a", ready("10.88.0.5")))
    assert zone.serial != before


def test_the_deprecated_pod_records_answer_any_dashed_address(zone):
    assert addresses(zone, "10-88-0-99.shop.pod.cluster.local") == ["10.88.0.99"]
    assert zone.answer("10-88-0-999.shop.pod.cluster.local", "A").rcode is Rcode.NXDOMAIN


def test_any_gives_every_record_of_the_name(zone):
    answer = zone.answer("cluster.local", "ANY")
    assert {r.type for r in answer.answers} == {"SOA", "NS"}


def test_a_slice_that_moves_to_another_service_leaves_the_first(zone):
    zone.put_service(Service(NS, "other-peers", headless=True))
    zone.put_slice(endpoint_slice("web-peers-a", ready("10.88.0.5"), service="other-peers"))
    assert zone.answer("web-peers.shop.svc.cluster.local", "A").rcode is Rcode.NXDOMAIN
    assert addresses(zone, "other-peers.shop.svc.cluster.local") == ["10.88.0.5"]


def test_a_thousand_endpoint_service_changes_one_slice_at_a_time():
    zone = ClusterZone()
    zone.put_service(PEERS)
    slices = [endpoint_slice(f"s{i}", *(ready(f"10.89.{i}.{j}") for j in range(100)))
              for i in range(10)]
    zone.set_slices(slices)
    assert len(addresses(zone, "web-peers.shop.svc.cluster.local")) == 1000
    zone.put_slice(endpoint_slice("s3", *(ready(f"10.89.3.{j}") for j in range(50))))
    assert len(addresses(zone, "web-peers.shop.svc.cluster.local")) == 950
