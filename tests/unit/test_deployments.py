"""prefect.yaml is validated before anything is deployed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shipyard.domain.deployments import (
    FIRST_STAGES,
    REQUIRED_DEPLOYMENTS,
    InvalidProjectFile,
    parse_prefect_yaml,
)
from shipyard.domain.pipeline import PipelineGraph

PROJECT = Path(__file__).resolve().parents[2]


def project_file() -> dict:
    return yaml.safe_load((PROJECT / "prefect.yaml").read_text())


def test_the_project_declares_every_pipeline_on_the_shipyard_pool():
    specs = parse_prefect_yaml(project_file(), work_pool="shipyard")
    assert sorted(s.name for s in specs) == sorted(REQUIRED_DEPLOYMENTS)
    assert {s.entrypoint for s in specs} >= {"pipelines/ci.py:ci_flow",
                                            "pipelines/rollback.py:rollback_flow"}


def test_every_pipeline_has_a_valid_first_stage_graph():
    assert set(FIRST_STAGES) == set(REQUIRED_DEPLOYMENTS)
    for stages in FIRST_STAGES.values():
        PipelineGraph.of(stages)


def with_entry(index: int, **changes: object) -> dict:
    raw = project_file()
    raw["deployments"][index].update(changes)
    return raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "must be a mapping"),
        ({"deployments": []}, "deployments: must be a non-empty list"),
        ({"deployments": ["ci"]}, r"deployments\[0\]: must be a mapping"),
        (with_entry(0, name="CI!"), r"deployments\[0\]: name: 'CI!'"),
        (with_entry(1, entrypoint="pipelines/cd.py"),
         r"deployments\[1\] \(cd\): entrypoint: 'pipelines/cd.py' must look like"),
        (with_entry(1, entrypoint="../elsewhere/cd.py:cd_flow"),
         r"entrypoint: '../elsewhere/cd.py' must be a path inside the project"),
        (with_entry(2, work_pool={"name": "default"}),
         r"deployments\[2\] \(release\): work_pool.name: is 'default'; it must be 'shipyard'"),
        (with_entry(3, work_pool=None), r"work_pool.name: is None"),
        (with_entry(4, name="ci"), "deployments: ci declared more than once"),
    ],
)
def test_a_malformed_entry_is_refused_naming_it(raw: object, message: str):
    with pytest.raises(InvalidProjectFile, match=message):
        parse_prefect_yaml(raw, work_pool="shipyard")


def test_a_missing_pipeline_is_named():
    raw = project_file()
    raw["deployments"] = [d for d in raw["deployments"] if d["name"] != "promote"]
    with pytest.raises(InvalidProjectFile, match="missing promote"):
        parse_prefect_yaml(raw, work_pool="shipyard")
