"""The typed seams between pipelines: an image named by content, the delivery options as
one parameter, and old runs' flat options gathered for a restart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter, ValidationError

from shipyard.domain.delivery_options import DeliveryOptions
from shipyard.domain.images import ImageRef
from shipyard.domain.states import State
from shipyard.store import RunRecord, StageRecord
from stages.restart import restart_parameters

DIGEST = "sha256:" + "ab" * 32


def test_an_image_is_named_by_its_digest_in_its_repository():
    image = ImageRef.of_app("127.0.0.1:5000", "gateway", DIGEST)
    assert image.reference == f"127.0.0.1:5000/shipyard/gateway@{DIGEST}"
    assert image.short == "ab" * 6


@pytest.mark.parametrize(("registry", "repository", "digest", "field"), [
    ("127.0.0.1:5000", "shipyard/gateway", "sha256:abc", "digest"),
    ("127.0.0.1:5000", "shipyard/gateway", "SHA256:" + "ab" * 32, "digest"),
    ("127.0.0.1:5000", "Shipyard/Gateway", DIGEST, "repository"),
    ("127.0.0.1:5000/x", "shipyard/gateway", DIGEST, "registry"),
    ("", "shipyard/gateway", DIGEST, "registry"),
])
def test_a_malformed_image_is_refused_naming_the_field(registry, repository, digest, field):
    with pytest.raises(ValueError, match=f"image {field}"):
        ImageRef(registry, repository, digest)


def test_an_image_survives_being_recorded_as_json_and_read_back():
    image = ImageRef.of_app("127.0.0.1:5000", "data", DIGEST)
    adapter = TypeAdapter(ImageRef)
    recorded = adapter.dump_python(image, mode="json")
    assert recorded == {"registry": "127.0.0.1:5000", "repository": "shipyard/data",
                        "digest": DIGEST}
    assert adapter.validate_python(recorded) == image
    with pytest.raises(ValidationError, match="image digest"):
        adapter.validate_python({**recorded, "digest": "latest"})


def test_delivery_options_record_only_what_was_asked():
    assert DeliveryOptions().as_parameter() == {}
    asked = DeliveryOptions(warm_seconds=0, judgment=True, why="hotfix")
    assert asked.as_parameter() == {"warm_seconds": 0.0, "judgment": True, "why": "hotfix"}
    assert DeliveryOptions.model_validate(asked.as_parameter()) == asked


def test_an_unknown_or_out_of_range_delivery_option_is_refused_naming_it():
    with pytest.raises(ValidationError, match="canary_window"):
        DeliveryOptions.model_validate({"canary_window": 30})
    with pytest.raises(ValidationError, match="warm_seconds"):
        DeliveryOptions(warm_seconds=-1)


def _ended_promote(parameters: dict[str, object]) -> RunRecord:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    stage = StageRecord(ref="plan", name="plan", requires=(), state=State.SUCCEEDED,
                        reason="Succeeded", message="", outputs={}, attempts=1,
                        started_at=at, finished_at=at)
    return RunRecord(id="a" * 32, pipeline="promote", state=State.FAILED, reason="Failed",
                     message="", trigger="cli", actor="ann", app="gateway", repo_url=None,
                     ref=None, commit_sha="c" * 40, parameters=parameters,
                     created_at=at, started_at=at, finished_at=at, prefect_flow_run_id=None,
                     restarted_from=None, stages=(stage,))


def test_a_restart_of_a_run_recorded_with_flat_options_asks_for_the_same_options():
    old = _ended_promote({"from_env": "staging", "to_env": "prod", "version": None,
                          "why": "faster", "warm_seconds": 0, "canary_window_seconds": None,
                          "judgment": False, "judgment_timeout_seconds": None})
    asked = restart_parameters(old, "plan")
    assert asked["options"] == {"why": "faster", "warm_seconds": 0, "judgment": False}
    assert not {"why", "warm_seconds", "judgment"} & set(asked)
    assert DeliveryOptions.model_validate(asked["options"]).warm_seconds == 0
    new = _ended_promote({"from_env": "staging", "to_env": "prod",
                          "options": {"why": "faster"}})
    assert restart_parameters(new, "plan")["options"] == {"why": "faster"}


def test_plans_and_bakes_recorded_before_images_were_typed_are_still_read():
    from stages.bake import BakeResult
    from stages.releases import ReleasePlan

    old = f"127.0.0.1:5000/shipyard/gateway@{DIGEST}"
    bake = BakeResult.model_validate({"app": "gateway", "version": "abc", "image": old,
                                      "bakes": {}})
    assert bake.image == ImageRef.of_app("127.0.0.1:5000", "gateway", DIGEST)
    plan = {"app": "gateway", "environment": "prod", "version": "abc", "digest": "",
            "commit_sha": "abc", "ci_run_id": "r", "depends_on": []}
    assert ReleasePlan.model_validate({**plan, "image": ""}).image is None
    assert ReleasePlan.model_validate({**plan, "image": old}).image == bake.image
    with pytest.raises(ValidationError, match="image"):
        BakeResult.model_validate({"app": "gateway", "version": "abc", "bakes": {},
                                   "image": "127.0.0.1:5000/shipyard/gateway:latest"})
