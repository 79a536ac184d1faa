"""The Prefect adapter against the real server: idempotent hand-over, and a malformed
prefect.yaml registers nothing."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from shipyard.adapters.prefect import start_deployment

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
