"""The deployer's actions (:mod:`ui.actions`), called as the API's routes and the pages'
forms call them, on a SQLite store; what needs Prefect is left to the integration tests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pipelines.handover import HandOverFailed
from shipyard.adapters.prefect import PrefectError, PrefectUnavailable
from shipyard.domain.access import Role
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.settings import Settings
from shipyard.store import AmbiguousRunId, Ledger, RunNotFound, RunRecord, Store
from stages.judgments_service import InvalidAnswer, NotWaiting
from ui import actions
from ui.actions import ActionRefused, JudgmentKeyUnreadable, NotPermitted
from ui.auth import Principal

DAVE = Principal("dave", Role.DEPLOYER, "session", "session:x")
DAVE_BY_TOKEN = Principal("dave", Role.DEPLOYER, "token", "token:x")
NOBODY = Principal("anonymous", Role.DEPLOYER, "anonymous")
GRAPH = [StageSpec("checkout"), StageSpec("build", ("checkout",))]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'shipyard.db'}")
    yield opened
    opened.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", judgment_key_file=None)


def queued_run(store: Store) -> RunRecord:
    """A run recorded queued and never handed to Prefect."""
    return store.create_run("ci", GRAPH, trigger="push", app="discovery", ref="main",
                            repo_url="file:///src", actor="ada")


@pytest.mark.parametrize(("refusal", "status"), [
    (RunNotFound("abcd"), 404),
    (AmbiguousRunId("ab", ["ab1", "ab2"]), 404),
    (NotPermitted("not this way"), 403),
    (ActionRefused("not now"), 409),
    (InvalidAnswer("say why"), 422),
    (NotWaiting("nothing waits"), 409),
    (JudgmentKeyUnreadable("see the log"), 500),
    (HandOverFailed("Prefect refused", run_id="r1", unavailable=True), 503),
    (PrefectUnavailable("down"), 503),
    (PrefectError("broke"), 502),
    (ValueError("app name 'X' must be ..."), 422),
])
def test_each_refusal_has_the_status_the_api_answers_with(refusal: Exception, status: int):
    assert isinstance(refusal, actions.REFUSALS)
    assert actions.refusal_status(refusal) == status


def test_a_fault_is_no_refusal():
    fault = RuntimeError("a bug")
    assert not isinstance(fault, actions.REFUSALS)
    with pytest.raises(TypeError, match="RuntimeError is not one of the actions' refusals"):
        actions.refusal_status(fault)


def test_cancelling_a_queued_run_records_who_why_and_by_which_route(store: Store):
    run = queued_run(store)
    cancelled = asyncio.run(actions.cancel(store, run.id, DAVE_BY_TOKEN, " superseded "))
    assert cancelled.state is State.CANCELLED
    assert cancelled.message == "cancelled by dave: superseded"
    [entry] = Ledger(store).audit_trail(subject_kind="run", subject_id=run.id)
    assert (entry.actor, entry.action) == ("dave", "run.cancel")
    assert entry.details == {"reason": "superseded", "pipeline": "ci", "via": "token"}


def test_cancelling_an_ended_run_is_refused_naming_its_state(store: Store):
    run = queued_run(store)
    asyncio.run(actions.cancel(store, run.id, DAVE, ""))
    with pytest.raises(ActionRefused, match="is cancelled already; only a run that has not"):
        asyncio.run(actions.cancel(store, run.id, DAVE, ""))


def test_restarting_a_run_still_going_is_refused(store: Store):
    run = queued_run(store)
    with pytest.raises(ActionRefused, match="restart a run once it has ended"):
        asyncio.run(actions.restart(store, run.id, DAVE, "build"))


def test_a_rollback_without_a_reason_is_refused_before_anything_starts(store: Store,
                                                                       settings: Settings):
    with pytest.raises(ActionRefused, match="a rollback needs a reason"):
        asyncio.run(actions.roll_back(store, settings, "gateway", DAVE, environment="prod",
                                      to=None, why="  "))
    assert store.list_runs(limit=10) == []


def test_promoting_an_app_that_cannot_exist_names_the_rule(store: Store, settings: Settings):
    with pytest.raises(ValueError, match="must be 2-40 lowercase letters"):
        asyncio.run(actions.promote(store, settings, "Not_An_App", DAVE, from_env="staging",
                                    to_env="prod", version=None, why=""))


@pytest.fixture
def launched(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The parameters of each pipeline an action launches, recorded queued (not handed
    to Prefect)."""
    parameters: list[dict[str, Any]] = []

    async def launch(store: Store, pipeline: str, params: Mapping[str, Any], *,
                     trigger: str, actor: str, app: str) -> RunRecord:
        parameters.append({"pipeline": pipeline, **params})
        return store.create_run(pipeline, GRAPH, trigger=trigger, actor=actor, app=app,
                                parameters=dict(params))

    monkeypatch.setattr(actions, "launch", launch)
    return parameters


def delivering(tmp_path: Path, *environments: str, production: str = "") -> Settings:
    return Settings(home=tmp_path / "home", environments=list(environments),
                    production_environment=production)


def test_a_promotion_goes_into_production_from_the_environment_before_it_by_default(
        store: Store, tmp_path: Path, launched: list[dict[str, Any]]):
    settings = delivering(tmp_path, "dev", "qa", "live", "sandbox", production="live")
    asyncio.run(actions.promote(store, settings, "gateway", DAVE, from_env=None,
                                to_env=None, version=None, why="ready"))
    assert (launched[0]["from_env"], launched[0]["to_env"]) == ("qa", "live")
    [entry] = Ledger(store).audit_trail(subject_kind="app", subject_id="gateway")
    assert (entry.details["from"], entry.details["to"]) == ("qa", "live")


def test_a_promotion_into_another_environment_starts_from_the_one_before_that(
        store: Store, tmp_path: Path, launched: list[dict[str, Any]]):
    settings = delivering(tmp_path, "dev", "qa", "live")
    asyncio.run(actions.promote(store, settings, "gateway", DAVE, from_env="",
                                to_env="qa", version=None, why=""))
    assert (launched[0]["from_env"], launched[0]["to_env"]) == ("dev", "qa")


def test_a_promotion_with_nothing_before_its_target_is_refused(
        store: Store, tmp_path: Path, launched: list[dict[str, Any]]):
    settings = delivering(tmp_path, "prod")
    with pytest.raises(ActionRefused, match="prod is the first of SHIPYARD_ENVIRONMENTS: no "
                                            "environment comes before it to promote from"):
        asyncio.run(actions.promote(store, settings, "gateway", DAVE, from_env=None,
                                    to_env=None, version=None, why=""))
    with pytest.raises(ValueError, match="'live' is not one of SHIPYARD_ENVIRONMENTS"):
        asyncio.run(actions.promote(store, settings, "gateway", DAVE, from_env=None,
                                    to_env="live", version=None, why=""))
    assert launched == []


def test_a_rollback_rolls_the_production_environment_back_by_default(
        store: Store, tmp_path: Path, launched: list[dict[str, Any]]):
    settings = delivering(tmp_path, "staging", "live")
    asyncio.run(actions.roll_back(store, settings, "gateway", DAVE, environment=None,
                                  to=None, why="p99 doubled"))
    assert launched[0]["environment"] == "live"


def test_nobody_signed_in_may_not_answer_a_judgment(store: Store, settings: Settings):
    run = queued_run(store)
    with pytest.raises(NotPermitted, match="needs a signed-in deployer or an API token"):
        asyncio.run(actions.answer(store, settings, run.id, NOBODY, decision="approve",
                                   comment=""))
    assert not settings.judgment_key_path.exists(), "refused before the key is read"


def test_an_answer_signed_by_an_unreadable_key_names_no_file_to_the_asker(
        store: Store, settings: Settings, caplog: pytest.LogCaptureFixture):
    key = settings.judgment_key_path
    key.parent.mkdir(parents=True)
    key.write_text("")
    key.chmod(0o600)
    with caplog.at_level(logging.ERROR, logger="shipyard.ui.actions"), \
            pytest.raises(JudgmentKeyUnreadable) as refused:
        asyncio.run(actions.answer(store, settings, queued_run(store).id, DAVE,
                                   decision="approve", comment=""))
    assert str(refused.value) == ("Shipyard's judgment key cannot be read; the ui's log "
                                  "says why")
    assert str(key) in caplog.text, "the log says which file and why"


def test_answering_a_run_that_waits_for_no_judgment_says_so(store: Store,
                                                             settings: Settings):
    run = queued_run(store)
    with pytest.raises(NotWaiting, match="not waiting for a judgment"):
        asyncio.run(actions.answer(store, settings, run.id, DAVE, decision="approve",
                                   comment=""))


def test_a_rejection_without_a_reason_is_the_askers_mistake(store: Store,
                                                            settings: Settings):
    run = queued_run(store)
    with pytest.raises(InvalidAnswer):
        asyncio.run(actions.answer(store, settings, run.id, DAVE, decision="reject",
                                   comment=" "))


def test_an_unknown_run_is_not_found(store: Store, settings: Settings):
    with pytest.raises(RunNotFound):
        asyncio.run(actions.answer(store, settings, "feedbeef", DAVE, decision="approve",
                                   comment=""))
