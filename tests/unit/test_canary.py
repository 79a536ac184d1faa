"""Which bake and which baseline the canary stage compares: the production environment's,
as the settings name it, unless the pipeline names the environment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from shipyard.domain.images import ImageRef
from shipyard.settings import Settings
from shipyard.store import ReleaseRecord, Store
from stages.bake import BakedEnvironment, BakeResult
from stages.canary import CanaryOptions, analyze_canary
from stages.runtime import StageContext, StageFailure

# The stage function itself, without the Prefect task and the store around it.
canary_of = analyze_canary.fn.__wrapped__  # type: ignore[attr-defined]


def release_in(environment: str) -> ReleaseRecord:
    return ReleaseRecord(id=1, app="gateway", version="1", environment=environment,
                         kind="deploy", digest="sha256:1", manifests="kind: Deployment",
                         run_id=None, source_release_id=None, actor="ci", why="",
                         created_at=datetime(2025, 1, 1, tzinfo=UTC))


def baked_for(*environments: str) -> BakeResult:
    return BakeResult(app="gateway", version="2", image=ImageRef.of_app(
        "127.0.0.1:5000", "gateway", "sha256:" + "2" * 64), bakes={
        env: BakedEnvironment(environment=env, namespace=f"shipyard-{env}", slot="v002",
                              replicas=1, manifest_digest="sha256:2", objects=[], manifests="")
        for env in environments})


def judge(settings: Settings, bake: BakeResult, production: ReleaseRecord,
          **kwargs: Any) -> None:
    ctx = StageContext("r" * 32, "canary:gateway", 1, settings, cast(Store, None))
    asyncio.run(canary_of(ctx, bake, production, None, CanaryOptions(), **kwargs))


def test_without_the_production_bake_the_canary_names_the_production_environment():
    settings = Settings(environments=["staging", "live"])
    with pytest.raises(StageFailure, match="the bake for live") as failure:
        judge(settings, baked_for("staging", "prod"), release_in("live"))
    assert failure.value.reason == "NotBaked"


def test_a_baseline_from_another_environment_is_refused():
    with pytest.raises(StageFailure, match="the canary in prod needs the release running "
                                           "there as its baseline, not staging's"):
        judge(Settings(), baked_for("prod"), release_in("staging"))


def test_the_environment_the_pipeline_names_picks_the_bake():
    with pytest.raises(StageFailure, match="the bake for staging"):
        judge(Settings(), baked_for("prod"), release_in("staging"),
                    environment="staging")
