"""Two releases compared for the pages and the API (:mod:`ui.releases`), on a SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.store import Ledger, ReleaseRecord, Store
from ui.releases import ReleaseNotFound, compare_releases

MANIFESTS = "kind: Deployment\nspec:\n  replicas: {n}\n"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    store = Store.open(f"sqlite:///{tmp_path / 'shipyard.db'}")
    yield Ledger(store)
    store.close()


def release(ledger: Ledger, app: str, version: str, replicas: int) -> ReleaseRecord:
    return ledger.record_release(app=app, version=version, environment="prod",
                                 kind="deploy", digest="sha256:" + "1" * 64, actor="ada",
                                 why="test", manifests=MANIFESTS.format(n=replicas))


def test_two_releases_of_an_app_come_with_their_manifests_diff(ledger: Ledger):
    first, second = release(ledger, "gateway", "v1", 2), release(ledger, "gateway", "v2", 3)
    compared = compare_releases(ledger, "gateway", first.id, second.id)
    assert (compared.left.version, compared.right.version) == ("v1", "v2")
    assert "-  replicas: 2" in compared.diff and "+  replicas: 3" in compared.diff


def test_releases_with_the_same_manifests_differ_in_nothing(ledger: Ledger):
    first, again = release(ledger, "gateway", "v1", 2), release(ledger, "gateway", "v1", 2)
    assert compare_releases(ledger, "gateway", first.id, again.id).diff == []


def test_a_missing_release_is_not_found_by_its_number(ledger: Ledger):
    first = release(ledger, "gateway", "v1", 2)
    with pytest.raises(ReleaseNotFound, match="no release #999"):
        compare_releases(ledger, "gateway", first.id, 999)


def test_another_apps_release_is_not_found_for_this_app(ledger: Ledger):
    ours, theirs = release(ledger, "gateway", "v1", 2), release(ledger, "billing", "v1", 2)
    with pytest.raises(ReleaseNotFound, match="are not both gateway's"):
        compare_releases(ledger, "gateway", ours.id, theirs.id)
