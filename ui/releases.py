"""The release history as the pages and the API read it: two of an app's releases compared,
and DORA's report on an environment's deployments.

The API answers these as JSON and the pages as HTML; both call the functions here, so a
page never reads what the API answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from shipyard.domain.dora import DEFAULT_WINDOWS, DoraReport, dora_report
from shipyard.store import Ledger, ReleaseRecord, Store
from shipyard.store.deliveries import production_deployments
from ui.presentation import manifest_diff

__all__ = ["ReleaseComparison", "ReleaseNotFound", "compare_releases", "production_dora"]


class ReleaseNotFound(LookupError):
    """A release asked for is not recorded, or is another app's (HTTP 404)."""


@dataclass(frozen=True, slots=True)
class ReleaseComparison:
    """Two releases of one app and the unified diff of their manifests (empty when the
    same)."""

    left: ReleaseRecord
    right: ReleaseRecord
    diff: list[str]


def compare_releases(ledger: Ledger, app: str, first: int, second: int) -> ReleaseComparison:
    """Releases ``first`` and ``second`` of ``app`` and their manifests' diff; raises
    :class:`ReleaseNotFound` when either is missing or another app's."""
    try:
        left, right = ledger.release(first), ledger.release(second)
    except LookupError as err:
        raise ReleaseNotFound(str(err)) from None
    if left.app != app or right.app != app:
        raise ReleaseNotFound(f"releases #{first} and #{second} are not both {app}'s")
    return ReleaseComparison(left, right, manifest_diff(left, right))


def production_dora(store: Store, environment: str) -> DoraReport:
    """DORA's report for ``environment`` now, from the release history of the last two
    of the longest windows (the current one and the one before it)."""
    now = store.clock()
    deployments = production_deployments(
        store, environment, since=now - timedelta(days=2 * max(DEFAULT_WINDOWS)))
    return dora_report(deployments, now=now, environment=environment)
