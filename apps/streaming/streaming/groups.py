"""Committed offsets of consumer groups: for each group, topic and partition, the offset
of the next record the group should read (Kafka's convention).

One JSON file per group under DATA_DIR/groups, replaced atomically on every commit (and
fsynced with FSYNC_POLICY=always), so a commit answered 200 survives a restart and a
crash leaves either the previous commit or the new one. Files stay small: a group holds
one number per partition it has read.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path

from streaming.files import write_atomically
from streaming.log import is_valid_name

__all__ = ["GroupOffsets", "Offsets"]

logger = logging.getLogger(__name__)

# topic -> partition -> next offset to read
Offsets = dict[str, dict[int, int]]


class GroupOffsets:
    """Thread-safe. Commits to one group are serialised by that group's lock; reads see
    the last commit that finished, from memory."""

    def __init__(self, root: Path, *, fsync: bool) -> None:
        self.directory = root / "groups"
        self.fsync = fsync
        self._groups: dict[str, Offsets] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def recover(self) -> None:
        """Load every group's file. Blocking; call it from a worker thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.directory.glob("*.json")):
            raw = json.loads(path.read_text())
            self._groups[path.stem] = {
                topic: {int(partition): int(offset) for partition, offset in offsets.items()}
                for topic, offsets in raw.items()
            }
        logger.info("consumer groups recovered: %d", len(self._groups))

    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Record `offsets` (partition -> next offset) of `topic` for `group`, durably;
        other partitions and topics of the group keep their committed offsets."""
        if not is_valid_name(group):
            raise ValueError(f"group name {group!r} is invalid")
        with self._lock:
            group_lock = self._locks.setdefault(group, threading.Lock())
        with group_lock:
            current = self._groups.get(group, {})
            updated = {name: dict(parts) for name, parts in current.items()}
            updated.setdefault(topic, {}).update(offsets)
            document = {name: {str(p): o for p, o in sorted(parts.items())}
                        for name, parts in sorted(updated.items())}
            write_atomically(self.directory / f"{group}.json",
                             json.dumps(document).encode(), fsync=self.fsync)
            # Swapped in whole after the write: readers never see a half-applied commit.
            with self._lock:
                self._groups[group] = updated

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """partition -> committed offset of `topic` for `group`; empty if none."""
        with self._lock:
            return dict(self._groups.get(group, {}).get(topic, {}))

    def of_group(self, group: str) -> Offsets:
        """Every committed offset of `group`."""
        with self._lock:
            return {topic: dict(parts) for topic, parts in self._groups.get(group, {}).items()}

    def snapshot(self) -> dict[str, Offsets]:
        """Every committed offset of every group (for metrics)."""
        with self._lock:
            return {group: {topic: dict(parts) for topic, parts in offsets.items()}
                    for group, offsets in self._groups.items()}
