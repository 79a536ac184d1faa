"""One segment file of a partition's log, with its sparse offset index.

A segment holds the frames (see records.py) of offsets [base_offset, next_offset), in
order, in `<base_offset:020d>.log`. Its index maps an offset to the file position of its
frame for one frame in every `index_interval_bytes` or so, like Kafka's, so a read seeks
to the nearest indexed frame at or before the offset it wants and scans forward from
there.

Only the last segment of a partition (the active one) is appended to. Its index lives in
memory and is rebuilt by scanning the file at startup, which is also where a torn last
frame is found and cut off. A segment is sealed when it is full: its file is fsynced and
its index written to `<base_offset:020d>.index`, once, so startup reads that instead of
scanning the whole file.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streaming.files import fsync_dir, write_atomically
from streaming.records import HEADER_SIZE, Frame, Record, encode_record, split_frames

__all__ = ["CorruptLogError", "Segment", "segment_bases"]

logger = logging.getLogger(__name__)

_INDEX_ENTRY = struct.Struct(">II")  # offset relative to the base, file position
_SCAN_CHUNK = 1024 * 1024
READ_CHUNK = 64 * 1024


class CorruptLogError(RuntimeError):
    """A segment is damaged where a crash cannot have damaged it (not at the end of the
    last segment); the service refuses to guess and names the file."""


def segment_bases(directory: Path) -> list[int]:
    """The base offsets of the segment files in `directory`, ascending."""
    return sorted(int(p.stem) for p in directory.glob("*.log") if p.stem.isdigit())


@dataclass(frozen=True, slots=True)
class _Scan:
    offsets: list[int]
    positions: list[int]
    end: int
    next_offset: int
    problem: str | None


class Segment:
    """A segment file. `size` and `next_offset` only grow, and are updated after the bytes
    they cover are written, so a reader that reads them first never sees a partial frame.
    Appends must be serialised by the caller (the partition's lock); reads need no lock."""

    def __init__(self, directory: Path, base_offset: int, *, size: int, next_offset: int,
                 offsets: list[int], positions: list[int], writable: bool,
                 index_interval_bytes: int) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.size = size
        self.next_offset = next_offset
        self.index_interval_bytes = index_interval_bytes
        self._offsets = offsets
        self._positions = positions
        self._read_fd = os.open(self.path, os.O_RDONLY)
        self._write_fd = os.open(self.path, os.O_WRONLY | os.O_APPEND) if writable else None

    @property
    def path(self) -> Path:
        return self.directory / f"{self.base_offset:020d}.log"

    @property
    def index_path(self) -> Path:
        return self.directory / f"{self.base_offset:020d}.index"

    @property
    def sealed(self) -> bool:
        return self._write_fd is None

    # -- creating and recovering ----------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, base_offset: int, *, index_interval_bytes: int,
               fsync: bool) -> Segment:
        """A new, empty, active segment starting at `base_offset`."""
        path = directory / f"{base_offset:020d}.log"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        if fsync:
            fsync_dir(directory)
        return cls(directory, base_offset, size=0, next_offset=base_offset, offsets=[],
                   positions=[], writable=True, index_interval_bytes=index_interval_bytes)

    @classmethod
    def recover(cls, directory: Path, base_offset: int, *, active: bool,
                index_interval_bytes: int, fsync: bool) -> Segment:
        """Open an existing segment after a restart.

        A sealed segment trusts its index file if it is consistent (else rebuilds it) and
        scans only the frames after the last indexed one. The active segment is scanned
        whole; a torn or corrupt tail is cut off (and logged), since only the last write
        before a crash can be incomplete. Damage anywhere else raises CorruptLogError.
        """
        path = directory / f"{base_offset:020d}.log"
        size = path.stat().st_size
        index_path = directory / f"{base_offset:020d}.index"
        offsets: list[int] = []
        positions: list[int] = []
        if active:
            index_path.unlink(missing_ok=True)  # sealed once, then reopened: it is stale
        elif index_path.exists():
            offsets, positions = _load_index(index_path, base_offset, size)
        fd = os.open(path, os.O_RDONLY)
        try:
            start = (offsets[-1], positions[-1]) if offsets else (base_offset, 0)
            scan = _scan(fd, start[1], size, start[0], index_interval_bytes,
                         offsets, positions)
        finally:
            os.close(fd)
        if scan.problem is not None:
            if not active:
                raise CorruptLogError(f"{path}: {scan.problem}; only the last segment of "
                                      "a partition may end in a torn write")
            logger.warning("%s: cutting %d byte(s) at the end: %s (a write torn by a crash)",
                           path, size - scan.end, scan.problem)
            with open(path, "r+b") as file:
                file.truncate(scan.end)
                if fsync:
                    os.fsync(file.fileno())
            size = scan.end
        segment = cls(directory, base_offset, size=size, next_offset=scan.next_offset,
                      offsets=scan.offsets, positions=scan.positions, writable=active,
                      index_interval_bytes=index_interval_bytes)
        if not active and not index_path.exists():
            segment._write_index(fsync=fsync)
        return segment

    # -- writing --------------------------------------------------------------------------

    def append(self, records: Sequence[Record], *, fsync: bool) -> None:
        """Write `records` (offsets next_offset, next_offset + 1, ...) in one write, then
        fsync if asked; only then publish them. On an error the file is cut back to where
        it was, so a failed append leaves nothing behind, and the error is raised."""
        if self._write_fd is None:
            raise RuntimeError(f"{self.path} is sealed; append to the active segment")
        frames = [encode_record(record) for record in records]
        new_offsets: list[int] = []
        new_positions: list[int] = []
        last_indexed = self._positions[-1] if self._positions else None
        position = self.size
        for record, frame in zip(records, frames, strict=True):
            if last_indexed is None or position - last_indexed >= self.index_interval_bytes:
                new_offsets.append(record.offset)
                new_positions.append(position)
                last_indexed = position
            position += len(frame)
        data = b"".join(frames)
        try:
            written = 0
            while written < len(data):
                written += os.write(self._write_fd, data[written:])
            if fsync:
                os.fsync(self._write_fd)
        except OSError:
            os.ftruncate(self._write_fd, self.size)
            raise
        self._offsets.extend(new_offsets)
        self._positions.extend(new_positions)
        self.size = position
        self.next_offset = records[-1].offset + 1

    def seal(self, *, fsync: bool) -> None:
        """Make the file durable, write the index file, and take no more appends."""
        if self._write_fd is None:
            return
        if fsync:
            os.fsync(self._write_fd)
        os.close(self._write_fd)
        self._write_fd = None
        self._write_index(fsync=fsync)

    def _write_index(self, *, fsync: bool) -> None:
        data = b"".join(_INDEX_ENTRY.pack(offset - self.base_offset, position)
                        for offset, position in zip(self._offsets, self._positions,
                                                    strict=True))
        write_atomically(self.index_path, data, fsync=fsync)

    # -- reading --------------------------------------------------------------------------

    def position_of(self, offset: int) -> int:
        """The position of the last indexed frame at or before `offset` (0 if none)."""
        at = bisect.bisect_right(self._offsets, offset) - 1
        return self._positions[at] if at >= 0 else 0

    def read_frames(self, position: int, limit: int) -> tuple[list[Frame], int]:
        """The whole frames from `position`, reading at most about READ_CHUNK bytes (or
        one frame, if it is larger) and never past `limit`; and the position after them."""
        want = min(READ_CHUNK, limit - position)
        while True:
            chunk = os.pread(self._read_fd, want, position)
            split = split_frames(chunk, position)
            if split.corrupt is not None:
                raise CorruptLogError(f"{self.path}: {split.corrupt}")
            if split.frames or len(chunk) < want or want >= limit - position:
                return split.frames, split.end
            # The first frame is larger than the chunk: read exactly that frame.
            want = HEADER_SIZE + int.from_bytes(chunk[:4], "big")

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            if fd is not None:
                os.close(fd)
        self._write_fd = None


def _load_index(path: Path, base_offset: int, size: int) -> tuple[list[int], list[int]]:
    """The entries of an index file, or none (so the caller rescans) if it is damaged."""
    data = path.read_bytes()
    offsets: list[int] = []
    positions: list[int] = []
    if len(data) % _INDEX_ENTRY.size == 0:
        for relative, position in _INDEX_ENTRY.iter_unpack(data):
            offsets.append(base_offset + relative)
            positions.append(position)
        ordered = all(a < b for a, b in itertools.pairwise(offsets)) and all(
            a < b for a, b in itertools.pairwise(positions))
        if ordered and (not positions or (positions[0] == 0 and positions[-1] < size)):
            return offsets, positions
    logger.warning("%s is damaged; rebuilding it from the segment", path)
    path.unlink()
    return [], []


def _scan(fd: int, position: int, size: int, expected_offset: int, index_interval: int,
          offsets: list[int], positions: list[int]) -> _Scan:
    """Walk the frames from `position` (holding `expected_offset`) to `size`, checking that
    offsets follow each other, extending the index (`offsets`, `positions`, which may
    already end at `position`) as appends would have."""
    offsets, positions = list(offsets), list(positions)
    last_indexed = positions[-1] if positions else None
    pending = b""
    at = position
    while True:
        chunk = os.pread(fd, min(_SCAN_CHUNK, size - at - len(pending)), at + len(pending))
        buffer = pending + chunk
        split = split_frames(buffer, at)
        for frame in split.frames:
            if frame.record.offset != expected_offset:
                return _Scan(offsets, positions, frame.position, expected_offset,
                             f"frame at {frame.position} holds offset {frame.record.offset}, "
                             f"expected {expected_offset}")
            if last_indexed is None or frame.position - last_indexed >= index_interval:
                offsets.append(frame.record.offset)
                positions.append(frame.position)
                last_indexed = frame.position
            expected_offset += 1
        if split.corrupt is not None:
            return _Scan(offsets, positions, split.end, expected_offset, split.corrupt)
        pending = bytes(buffer[split.end - at:])
        at = split.end
        if not chunk:
            problem = None if not pending else (
                f"the last frame, at {at}, is incomplete ({len(pending)} byte(s))")
            return _Scan(offsets, positions, at, expected_offset, problem)
