"""The Prefect adapter against the real server: idempotent hand-over, and a malformed
prefect.yaml registers nothing."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from shipyard.adapters.prefect import start_deployment
from shipyard.adapters.prefect_errors import PrefectError, PrefectUnauthorized, PrefectUnavailable
from tests.support.stack import refused_port

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]


def test_the_same_idempotency_key_never_makes_a_second_flow_run(prefect_stack):
    params = {"app": "discovery", "environment": "nowhere"}

    async def twice() -> tuple[str, str]:
        first = await start_deployment("rollback/rollback", params, idempotency_key="k-42")
        second = await start_deployment("rollback/rollback", params, idempotency_key="k-42")
        async with get_client() as client:
            await client.delete_flow_run(UUID(first))
        return first, second

    first, second = asyncio.run(twice())
    assert first == second


def test_a_malformed_prefect_yaml_is_refused_and_nothing_is_deployed(prefect_stack, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", ".*_cache"))
    text = (copy / "prefect.yaml").read_text()
    (copy / "prefect.yaml").write_text(
        text.replace("entrypoint: pipelines/promote.py:promote_flow",
                     "entrypoint: pipelines/promote.py:no_such_flow"))

    async def deployment_names() -> list[str]:
        async with get_client() as client:
            return sorted(d.name for d in await client.read_deployments())

    before = asyncio.run(deployment_names())
    env = {**prefect_stack.env, "SHIPYARD_PROJECT_DIR": str(copy)}
    done = prefect_stack.shipyard_with(env, "deployments", "apply")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: prefect.yaml: deployment promote: entrypoint: pipelines/promote.py defines "
        "no function 'no_such_flow'")
    assert asyncio.run(deployment_names()) == before


def test_the_rest_hand_over_makes_the_flow_run_prefects_client_would(prefect_stack):
    """Started over the REST API without Prefect's client, the flow run is the
    deployment's, scheduled, with its tags and the parameters given."""
    params = {"app": "discovery", "environment": "nowhere", "to": None, "why": "rest",
              "revert": False}

    async def started() -> tuple[Any, Any]:
        flow_run_id = await start_deployment("rollback/rollback", params,
                                             idempotency_key=f"rest-{uuid4().hex}")
        async with get_client() as client:
            flow_run = await client.read_flow_run(UUID(flow_run_id))
            deployment = await client.read_deployment_by_name("rollback/rollback")
            await client.delete_flow_run(UUID(flow_run_id))
        return flow_run, deployment

    flow_run, deployment = asyncio.run(started())
    assert flow_run.deployment_id == deployment.id
    assert flow_run.parameters["why"] == "rest" and flow_run.parameters["to"] is None
    assert set(deployment.tags) <= set(flow_run.tags)
    assert flow_run.state is not None and flow_run.state.type.value in (
        "SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED")


def test_the_rest_hand_over_names_what_went_wrong(prefect_stack):
    with pytest.raises(PrefectError, match="Prefect has no deployment 'rollback/nope'"):
        asyncio.run(start_deployment("rollback/nope", {}))
    with temporary_settings(updates={PREFECT_API_AUTH_STRING: "shipyard:wrong"}), \
            pytest.raises(PrefectUnauthorized, match="PREFECT_API_AUTH_STRING"):
        asyncio.run(start_deployment("rollback/rollback", {}))
    with refused_port() as port, temporary_settings(
            updates={PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}), \
            pytest.raises(PrefectUnavailable, match="cannot be reached"):
        asyncio.run(start_deployment("rollback/rollback", {}))
