"""How records are laid out in a segment file: pure functions over bytes.

A frame is a 12-byte header, then the body:

    header: body length (u32) | CRC-32 of the body (u32) | format version (u32, 1)
    body:   offset (i64) | timestamp in ms since the epoch (i64) |
            key length (i32, -1 when there is no key) | key (UTF-8) | value (UTF-8 JSON)

The offset is inside the body, so every frame says which offset it holds and a scan can
check that offsets follow each other; the CRC covers it. A crash can leave the last frame
of a file half-written: `split_frames` reports such a tail as incomplete, and a frame
whose length is impossible or whose CRC does not match as corrupt, so recovery can cut
the file at the last good frame.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAX_BODY_SIZE",
    "Frame",
    "Record",
    "Split",
    "encode_record",
    "split_frames",
]

_HEADER = struct.Struct(">III")
_BODY_HEAD = struct.Struct(">qqi")
HEADER_SIZE = _HEADER.size
FORMAT_VERSION = 1
# Far above any record a request can carry (MAX_BODY_BYTES); a larger length is garbage.
MAX_BODY_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Record:
    """One record as stored: `value` is the JSON text of the value, as UTF-8 bytes."""

    offset: int
    timestamp_ms: int
    key: str | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Frame:
    """A record and where its frame sits: `position` (from the start of the buffer given
    to split_frames, plus its `base`) and `size` (header and body)."""

    record: Record
    position: int
    size: int


@dataclass(frozen=True, slots=True)
class Split:
    """What split_frames found: the whole frames, `end` (the position just after the last
    one) and, when it stopped before the buffer's end, why: `corrupt` names a frame that
    can never be read; otherwise the rest is an incomplete frame (more bytes may come, or,
    at the end of a file, it is a torn write)."""

    frames: list[Frame]
    end: int
    corrupt: str | None = None


def encode_record(record: Record) -> bytes:
    """The frame of `record`."""
    key = b"" if record.key is None else record.key.encode("utf-8")
    body = b"".join((
        _BODY_HEAD.pack(record.offset, record.timestamp_ms,
                        -1 if record.key is None else len(key)),
        key,
        record.value,
    ))
    return _HEADER.pack(len(body), zlib.crc32(body), FORMAT_VERSION) + body


def split_frames(buffer: bytes | memoryview, base: int = 0) -> Split:
    """Decode the whole frames at the start of `buffer`, which starts at file position
    `base`; positions in the answer include `base`."""
    view = memoryview(buffer)
    frames: list[Frame] = []
    at = 0
    while len(view) - at >= HEADER_SIZE:
        length, crc, version = _HEADER.unpack_from(view, at)
        if not _BODY_HEAD.size <= length <= MAX_BODY_SIZE:
            return Split(frames, base + at, f"frame at {base + at} has impossible length "
                                            f"{length}")
        if version != FORMAT_VERSION:
            return Split(frames, base + at, f"frame at {base + at} has unknown format "
                                            f"version {version}")
        if len(view) - at - HEADER_SIZE < length:
            break
        body = view[at + HEADER_SIZE:at + HEADER_SIZE + length]
        if zlib.crc32(body) != crc:
            return Split(frames, base + at, f"frame at {base + at} fails its CRC check")
        record = _decode_body(body)
        if record is None:
            return Split(frames, base + at, f"frame at {base + at} has an invalid body")
        frames.append(Frame(record, base + at, HEADER_SIZE + length))
        at += HEADER_SIZE + length
    return Split(frames, base + at)


def _decode_body(body: memoryview) -> Record | None:
    offset, timestamp_ms, key_length = _BODY_HEAD.unpack_from(body)
    start = _BODY_HEAD.size
    if offset < 0 or key_length < -1 or start + max(key_length, 0) > len(body):
        return None
    if key_length == -1:
        key = None
    else:
        try:
            key = bytes(body[start:start + key_length]).decode("utf-8")
        except UnicodeDecodeError:
            return None
        start += key_length
    return Record(offset, timestamp_ms, key, bytes(body[start:]))
