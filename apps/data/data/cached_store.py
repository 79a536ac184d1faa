"""The store behind the read-through cache: what the HTTP handlers call.

Cached: a user's first page (per page size) and point reads, the reads a player makes on
every screen. Not cached: later pages (each cursor is asked for about once) and "recent
across users" (any write anywhere would invalidate it). Every write or delete for a user
invalidates that user's entries after it commits, so this replica reads its own writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from data.cache import ReadThroughCache
from data.cursor import Cursor
from data.store import Activity, ActivityStore, Page, Written

__all__ = ["CachedActivityStore"]

CachedValue = Page | Activity | None


class CachedActivityStore:
    def __init__(self, store: ActivityStore, cache: ReadThroughCache[CachedValue]) -> None:
        self.store = store
        self.cache = cache

    def add(self, batch: Sequence[Activity], recorded_at: datetime) -> Written:
        try:
            return self.store.add(batch, recorded_at)
        finally:
            # Also after a failure: the transaction may have committed before the error
            # reached us (a lost connection at COMMIT), and a spare invalidation is cheap.
            for user_id in {a.user_id for a in batch}:
                self.cache.invalidate(user_id)

    def delete_user(self, user_id: str) -> int:
        try:
            return self.store.delete_user(user_id)
        finally:
            self.cache.invalidate(user_id)

    def page(self, user_id: str, limit: int, after: Cursor | None = None) -> Page:
        if after is not None:
            return self.store.page(user_id, limit, after)
        page = self.cache.get_or_load(user_id, ("first-page", limit),
                                      lambda: self.store.page(user_id, limit))
        assert isinstance(page, Page)
        return page

    def get(self, user_id: str, activity_id: str) -> Activity | None:
        """Absence is cached too: a write of that activity invalidates it like any other."""
        found = self.cache.get_or_load(user_id, ("activity", activity_id),
                                       lambda: self.store.get(user_id, activity_id))
        assert found is None or isinstance(found, Activity)
        return found

    def recent(self, limit: int) -> tuple[Activity, ...]:
        return self.store.recent(limit)
