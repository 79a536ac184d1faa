"""What a deploy does with baked objects: switch order, slots, canary and baseline tracks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shipyard.domain.bakes import (
    derive_track,
    manifest_digest,
    next_slot,
    slot_number,
    split_for_switch,
)
from shipyard.domain.catalog import parse_descriptor
from shipyard.domain.labels import SLOT_LABEL
from shipyard.domain.manifests import (
    BakeValues,
    InvalidManifest,
    parse_manifests,
    render_manifests,
)

APPS = Path(__file__).resolve().parents[2] / "apps"


def bake(app: str, *, slot: str = "", track: str = "stable") -> list[dict]:
    descriptor = parse_descriptor(yaml.safe_load((APPS / app / "app.yaml").read_text()),
                                  source=app)
    templates = {p.name: p.read_text() for p in (APPS / app / "deploy").glob("*.j2")}
    values = BakeValues(app=descriptor, environment="prod", namespace="shipyard-prod",
                        version="abc123", image=f"127.0.0.1:5000/shipyard/{app}@sha256:"
                        + "0" * 64, release=slot or "r-1", replicas=2, slot=slot,
                        track=track)
    return parse_manifests(render_manifests(templates, values))


def test_a_versioned_bake_names_its_deployment_and_services_select_only_it():
    objects = bake("gateway", slot="v007")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    service = next(o for o in objects if o["kind"] == "Service")
    assert deployment["metadata"]["name"] == "gateway-v007"
    assert deployment["spec"]["selector"]["matchLabels"][SLOT_LABEL] == "v007"
    assert deployment["spec"]["template"]["metadata"]["labels"][SLOT_LABEL] == "v007"
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "gateway",
                                           "shipyard.dev/track": "stable",
                                           SLOT_LABEL: "v007"}


def test_discovery_peers_stay_every_discovery_pod_whatever_the_version():
    objects = bake("discovery", slot="v003")
    peers = next(o for o in objects if o["metadata"]["name"] == "discovery-peers")
    assert peers["spec"]["selector"] == {"app.kubernetes.io/name": "discovery"}


def test_a_slot_is_for_the_stable_track_and_looks_like_v_and_digits():
    with pytest.raises(InvalidManifest, match="slot"):
        bake("gateway", slot="v007", track="canary")
    with pytest.raises(InvalidManifest, match="slot"):
        bake("gateway", slot="seven")


def test_services_come_after_the_workloads_they_switch_to():
    workloads, services = split_for_switch(bake("discovery", slot="v001"))
    assert {o["kind"] for o in workloads} == {"ConfigMap", "Deployment"}
    assert [o["metadata"]["name"] for o in services] == ["discovery", "discovery-peers"]


def test_slots_count_up_from_the_highest_ever_used_and_ignore_other_names():
    assert next_slot([]) == "v001"
    assert next_slot(["v001", "v009", "", "garbage", "v010"]) == "v011"
    assert slot_number("v042") == 42 and slot_number("x") == -1


def test_equal_bakes_have_equal_digests_and_one_byte_changes_it():
    assert manifest_digest("a: 1\n") == manifest_digest("a: 1\n")
    assert manifest_digest("a: 1\n") != manifest_digest("a: 2\n")
    assert manifest_digest("").startswith("sha256:")


def test_a_baseline_is_the_stable_bake_relabelled_with_its_config_renamed():
    stable = bake("gateway", slot="v004")
    baseline = derive_track(stable, app="gateway", track="baseline", replicas=1)
    assert {o["kind"] for o in baseline} == {"ConfigMap", "Deployment"}
    deployment = next(o for o in baseline if o["kind"] == "Deployment")
    config = next(o for o in baseline if o["kind"] == "ConfigMap")
    assert deployment["metadata"]["name"] == "gateway-baseline"
    assert config["metadata"]["name"] == "gateway-baseline-config"
    assert deployment["spec"]["replicas"] == 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["shipyard.dev/track"] == "baseline" and SLOT_LABEL not in labels
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "gateway", "shipyard.dev/track": "baseline"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"][0]["configMap"]["name"] == "gateway-baseline-config"
    assert pod["containers"][0]["envFrom"][0]["configMapRef"]["name"] == \
        "gateway-baseline-config"
    # The stable bake it came from is left as it was.
    assert next(o for o in stable if o["kind"] == "Deployment")["metadata"]["name"] == \
        "gateway-v004"


def test_only_canary_and_baseline_tracks_can_be_derived():
    with pytest.raises(ValueError, match="canary or baseline"):
        derive_track(bake("gateway"), app="gateway", track="stable", replicas=1)
