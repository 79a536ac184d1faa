"""Stage outputs as they are recorded and read back (a restart reuses them, a resumed flow
run returns them, the report pages show them): fields that say what they hold, older
records still readable, a value outside the domain's vocabulary refused. And inputs are
not outputs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stages.bake import BakeResult
from stages.canary import CanaryOptions, CanaryResult
from stages.chaos import ChaosResult
from stages.runtime import StageResult

BAKED = {"environment": "prod", "namespace": "shipyard-prod", "slot": "v007", "replicas": 2,
         "objects": ["Deployment/gateway-v007"], "manifests": "kind: Deployment\n"}
MANIFEST_DIGEST = "sha256:" + "ab" * 32


def bake_outputs(**baked: object) -> dict[str, object]:
    return {"app": "gateway", "version": "abc", "image": "r/gateway@sha256:" + "0" * 64,
            "bakes": {"prod": {**BAKED, **baked}}}


def test_a_bake_records_its_manifests_digest_under_that_name():
    bake = BakeResult.model_validate(bake_outputs(manifest_digest=MANIFEST_DIGEST))
    recorded = bake.model_dump(mode="json")["bakes"]["prod"]
    assert recorded["manifest_digest"] == MANIFEST_DIGEST and "digest" not in recorded
    assert bake.summary() == "gateway abc: prod v007 abababababab"


def test_a_bake_recorded_as_digest_by_an_earlier_version_still_reads():
    bake = BakeResult.model_validate(bake_outputs(digest=MANIFEST_DIGEST))
    assert bake.bakes["prod"].manifest_digest == MANIFEST_DIGEST


CANARY = {"app": "gateway", "baseline_version": "v1", "canary_version": "v2", "score": 97.5,
          "verdict": "pass", "pass_threshold": 95.0, "marginal_threshold": 75.0,
          "points": 30, "report": {"metrics": {}}, "load": {}}
CHAOS = {"app": "gateway", "verdict": "passed", "seed": 42, "report": {"experiment": "x"}}


def test_a_canary_verdict_is_one_of_the_judges():
    assert CanaryResult.model_validate(CANARY).verdict == "pass"
    with pytest.raises(ValidationError, match="'pass', 'marginal' or 'fail'"):
        CanaryResult.model_validate({**CANARY, "verdict": "passed"})


def test_a_chaos_verdict_is_one_of_the_experiments():
    assert ChaosResult.model_validate(CHAOS).verdict == "passed"
    with pytest.raises(ValidationError, match="'passed', 'deviated' or 'aborted'"):
        ChaosResult.model_validate({**CHAOS, "verdict": "pass"})


def test_canary_options_are_a_frozen_input_not_a_stage_result():
    options = CanaryOptions(window_seconds=30.0)
    assert not isinstance(options, StageResult)
    with pytest.raises(ValidationError, match="frozen"):
        options.window_seconds = 60.0
