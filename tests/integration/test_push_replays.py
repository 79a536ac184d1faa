"""A push replayed under a new delivery id within the window starts nothing, on SQLite and
PostgreSQL; time is a frozen clock moved by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shipyard.domain.clock import FrozenClock
from shipyard.domain.pipeline import StageSpec
from shipyard.store import Ledger, Store
from shipyard.store.records import DeliveryRecord

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SHA = "0123456789abcdef0123456789abcdef01234567"
URL = "https://github.com/acme/shop.git"
WINDOW = timedelta(minutes=10)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def ledger(store_url: str, clock: FrozenClock) -> Iterator[Ledger]:
    store = Store.open(store_url, clock=clock)
    yield Ledger(store)
    store.close()


def push(ledger: Ledger, delivery_id: str, **key: Any) -> tuple[DeliveryRecord, bool]:
    fields: dict[str, Any] = {"repo_url": URL, "ref": "main", "commit_sha": SHA, **key}
    return ledger.accept_delivery(
        delivery_id=delivery_id, event="push", detail="branch 'main' matches",
        pipeline="ci", stages=(StageSpec("checkout"),), trigger="push", actor="ada",
        parameters={"repo": fields["repo_url"], "ref": fields["commit_sha"]},
        replay_window=WINDOW, duplicate_detail="duplicate push: acme/shop main", **fields)


def test_a_replay_within_the_window_is_recorded_ignored_with_the_first_run(
        ledger: Ledger, clock: FrozenClock) -> None:
    first, _ = push(ledger, "d-1")
    clock.advance(WINDOW.total_seconds() - 1)

    replay, new = push(ledger, "d-2")

    assert new is True
    assert (replay.outcome, replay.run_id, replay.detail) == (
        "ignored", first.run_id, "duplicate push: acme/shop main")
    assert ledger.delivery("d-2") == replay
    assert len(ledger.store.list_runs()) == 1


def test_after_the_window_the_same_push_starts_a_run_again(ledger: Ledger,
                                                           clock: FrozenClock) -> None:
    first, _ = push(ledger, "d-1")
    clock.advance(WINDOW.total_seconds() + 1)

    later, _ = push(ledger, "d-2")

    assert later.outcome == "accepted" and later.run_id != first.run_id


@pytest.mark.parametrize("key", [
    {"commit_sha": "f" * 40}, {"ref": "release/1"},
    {"repo_url": "https://github.com/acme/cart.git"},
], ids=["commit", "ref", "repository"])
def test_another_commit_ref_or_repository_is_no_replay(ledger: Ledger,
                                                       key: dict[str, str]) -> None:
    push(ledger, "d-1")
    other, _ = push(ledger, "d-2", **key)
    assert other.outcome == "accepted"


def test_a_run_started_by_hand_is_not_what_a_push_replays(ledger: Ledger) -> None:
    ledger.store.create_run("ci", (StageSpec("checkout"),), trigger="manual", repo_url=URL,
                            ref="main", commit_sha=SHA)
    pushed, _ = push(ledger, "d-1")
    assert pushed.outcome == "accepted"
