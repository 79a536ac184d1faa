"""A number from outside past every id the store can hold (:data:`LARGEST_ID`) names nothing:
the lookups answer so on SQLite, which refuses to compare a column with such a number.
Schemathesis found two of them through the API (tests/faults/test_api_schema.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.domain.pipeline import StageSpec
from shipyard.store import Ledger, Store
from shipyard.store.browse import RunBrowser
from shipyard.store.models import LARGEST_ID

PAST_EVERY_ID = 446830529998756628051445940224  # GET /api/runs/{id}/logs?after= answered 500


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'shipyard.db'}")
    yield opened
    opened.close()


def logged_run(store: Store) -> str:
    run = store.create_run("ci", [StageSpec("build")], trigger="manual")
    store.append_log(run.id, "build", "compiling\n")
    return run.id


def test_no_log_chunk_comes_after_a_number_past_every_id(store: Store):
    run_id = logged_run(store)
    assert store.read_logs(run_id, after_id=PAST_EVERY_ID) == []
    assert store.read_logs(run_id, after_id=LARGEST_ID) == []
    assert [c.text for c in store.read_logs(run_id, after_id=0)] == ["compiling\n"]


def test_the_live_feed_replays_nothing_after_a_number_past_every_id(store: Store):
    logged_run(store)
    browser = RunBrowser(store)
    assert browser.changes_after(PAST_EVERY_ID) == []
    assert browser.logs_after(PAST_EVERY_ID) == []
    # An SSE `since` of "-<huge>.-<huge>": everything after it, as after 0.
    assert browser.changes_after(-PAST_EVERY_ID) == browser.changes_after(0) != []
    assert browser.logs_after(-PAST_EVERY_ID) == browser.logs_after(0) != []


@pytest.mark.parametrize("number", [PAST_EVERY_ID, -1029490045637886607360, 0])
def test_a_release_number_no_release_can_have_is_not_found(store: Store, number: int):
    with pytest.raises(LookupError, match=f"no release #{number}"):
        Ledger(store).release(number)
