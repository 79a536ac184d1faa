"""Schemathesis over the API's own OpenAPI schema, signed in as an admin (issue 14): every
operation, fed what its schema allows and what it does not, never answers a server error,
answers only statuses it declares, in the media type it declares, and every answer
matches its declared schema.

One real ``shipyard ui`` (uvicorn on a free loopback port, as the security tests run it)
on a SQLite store, with no Prefect (a closed port: nothing is handed over) and no cluster,
so the wire, the middleware and the error handlers are the ones a client meets. An action
that needs Prefect must say 503; no other 5xx is allowed. The store holds runs in each
state an action tells apart, with stages, logs, reports and releases, and about half the
generated requests name them (:data:`EXISTING`), so what exists is answered for too, not
only 404s.

Bounded for CI: :data:`EXAMPLES_PER_OPERATION` generated requests per operation besides
Schemathesis' coverage cases (edge values, missing and malformed parameters, other
methods), derandomized so that a run repeats the one before it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shipyard.domain.access import Role
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.settings import Settings
from shipyard.store import Accounts, Ledger, Store
from stages.judgment import JudgmentRequest
from tests.support.reports import seed_canary_run, seed_chaos_run
from tests.support.stack import free_port
from tests.support.webhooks import UiFailed, serve_ui
from ui.app import create_app

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 25
APP = "gateway"
CI_GRAPH = [StageSpec("checkout"), StageSpec("test", ("checkout",)),
            StageSpec("build", ("test",))]


def served_schema() -> dict[str, Any]:
    """The document ``/openapi.json`` serves, built as the ui builds it (``create_app``
    opens nothing until it starts). Schemathesis cannot load a schema from a pytest fixture
    on pytest 9.2 (its lazy loader sets ``Node._nodeid``, which is gone), so the operations
    are collected from this one; :func:`api` checks that the running ui serves the same."""
    key = SecretStr("a key for building the schema; nothing is signed with it")
    return create_app(Settings(home=Path(tempfile.gettempdir()) / "unused",
                               ui_secret_key=key)).openapi()


CONFIG = schemathesis.Config.from_dict({"checks": {"not_a_server_error": {
    # What needs Prefect says it cannot be reached: 503, declared by the operation
    # (status_code_conformance). Any other 5xx is a fault.
    "expected-statuses": ["2xx", "3xx", "4xx", "503"]}}})

schema = schemathesis.openapi.from_dict(served_schema(), config=CONFIG).exclude(
    # Server-sent events: a stream let in never ends, so there is no answer to check.
    # Their refusals (404, 429, 503) are tests/integration/test_ui_api.py's.
    path_regex=r"/events$")

EXISTING: dict[tuple[str, str], list[dict[str, Any]]] = {}
"""Parameters naming what the store holds, by where they go (``path_parameters``,
``query``, ``body``) and the operation's path: filled by :func:`api` once it has seeded
the store, drawn from by the hooks below as the test runs."""


def or_existing(where: str, context: schemathesis.HookContext,
                generated: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    path = context.operation.path if context.operation else ""

    def either() -> st.SearchStrategy[Any]:
        known = EXISTING.get((where, path))
        return st.one_of(generated, st.sampled_from(known)) if known else generated

    return st.deferred(either)  # the strategy may be shaped before the store is seeded


@schema.hook
def before_generate_path_parameters(context: schemathesis.HookContext,
                                    strategy: st.SearchStrategy[Any]
                                    ) -> st.SearchStrategy[Any]:
    return or_existing("path_parameters", context, strategy)


@schema.hook
def before_generate_query(context: schemathesis.HookContext,
                          strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return or_existing("query", context, strategy)


@schema.hook
def before_generate_body(context: schemathesis.HookContext,
                         strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return or_existing("body", context, strategy)


@dataclass(frozen=True)
class Seeded:
    runs: dict[str, list[str]]  # each run's id and its stages' refs
    releases: list[int]


def seed(store: Store) -> Seeded:
    """A ci run that succeeded (with logs), one queued, a cd run running and one waiting
    for a judgment (their flow runs unknown to the absent Prefect), a canary and a chaos
    report, and releases of :data:`APP` in both environments."""
    done = store.create_run("ci", CI_GRAPH, trigger="push", app=APP, ref="main",
                            repo_url="https://ada:hunter2@github.com/acme/shop.git",
                            commit_sha="a" * 40, actor="ada",
                            parameters={"repo": "https://github.com/acme/shop.git",
                                        "ref": "a" * 40, "branch": "main"})
    for spec in CI_GRAPH:
        store.transition_stage(done.id, spec.ref, State.RUNNING, reason="Started")
        store.append_log(done.id, spec.ref, f"{spec.ref}: fine\n")
        store.transition_stage(done.id, spec.ref, State.SUCCEEDED, reason="Succeeded")
    store.finish_run(done.id)
    queued = store.create_run("ci", CI_GRAPH, trigger="manual", app=APP, actor="ada")
    running = store.create_run("cd", [StageSpec("deploy")], trigger="manual", app=APP,
                               actor="ada", prefect_flow_run_id=flow_run_id(1))
    store.transition_stage(running.id, "deploy", State.RUNNING, reason="Started")
    waiting = store.create_run("cd", [StageSpec("judgment")], trigger="manual", app=APP,
                               actor="ada", prefect_flow_run_id=flow_run_id(2))
    store.transition_stage(waiting.id, "judgment", State.RUNNING, reason="Started")
    asked = JudgmentRequest(subject=f"{APP} v2 into prod", flow_run_id=flow_run_id(2),
                            wait="suspend", deadline=datetime.now(UTC) + timedelta(days=1),
                            timeout_seconds=86400, nonce="0" * 32)
    store.transition_stage(waiting.id, "judgment", State.WAITING, reason="AwaitingJudgment",
                           outputs=asked.model_dump(mode="json"))
    ledger = Ledger(store)
    releases = [ledger.record_release(app=APP, version=version, environment=environment,
                                      kind="deploy", digest="sha256:" + version[-1] * 64,
                                      actor="ada", why="seeded", slot="red",
                                      manifests=f"image: {APP}:{version}\n", run_id=done.id)
                for environment, version in (("staging", "v1"), ("prod", "v1"),
                                             ("staging", "v2"))]
    runs = [done, queued, running, waiting, seed_canary_run(store, APP),
            seed_chaos_run(store, APP)]
    return Seeded({run.id: [s.ref for s in store.get_run(run.id).stages] for run in runs},
                  [release.id for release in releases])


def flow_run_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def existing(seeded: Seeded) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """What :data:`EXISTING` holds for ``seeded``, for every operation it concerns."""
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in schema.raw_schema["paths"]:
        if "{stage_ref}" in path:
            found["path_parameters", path] = [{"run_id": run, "stage_ref": ref}
                                              for run, refs in seeded.runs.items()
                                              for ref in refs]
        elif "{run_id}" in path:
            found["path_parameters", path] = [{"run_id": run} for run in seeded.runs]
        elif "{app}" in path:
            found["path_parameters", path] = [{"app": APP}]
    ids = seeded.releases
    found["query", "/api/apps/{app}/releases/diff"] = [{"from": a, "to": b}
                                                       for a in ids for b in ids]
    found["body", "/api/runs/{run_id}/restart"] = [{"from_stage": ref}
                                                   for ref in ("checkout", "build")]
    return found


@dataclass(frozen=True)
class Api:
    """The running ui and an admin's API token."""

    url: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """``shipyard ui`` on a seeded SQLite store; its Prefect is a closed port, and there
    is no cluster."""
    home = tmp_path_factory.mktemp("api-schema")
    store_url = f"sqlite:///{home / 'shipyard.db'}"
    store = Store.open(store_url)
    accounts = Accounts(store)
    accounts.add_user("alice", "a long enough password", Role.ADMIN)
    token, _ = accounts.create_token("schemathesis", owner="alice", role=Role.ADMIN)
    EXISTING.update(existing(seed(store)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHIPYARD_"))}
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_DATABASE_URL=store_url,
               PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api",
               SHIPYARD_HAND_OVER_INTERVAL_SECONDS="60",
               SHIPYARD_WEBHOOK_SECRET="the faults tests' webhook secret")
    try:
        with serve_ui(env, home) as ui:
            api = Api(ui.url, token)
            served = httpx.get(f"{api.url}/openapi.json", headers=api.auth, timeout=30)
            assert served.json() == served_schema(), "the ui serves another schema"
            yield api
    except UiFailed as err:
        pytest.fail(str(err))
    finally:
        store.close()


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None,
          deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_answer_is_declared_and_none_is_a_server_error(case: schemathesis.Case,
                                                             api: Api) -> None:
    case.call_and_validate(base_url=api.url, headers=api.auth, timeout=30,
                           checks=[not_a_server_error, status_code_conformance,
                                   content_type_conformance, response_schema_conformance])
