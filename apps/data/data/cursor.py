"""Keyset pagination cursors: where the previous page of a user's history ended.

A page is ordered newest first by (activity_time, activity_id), and the next page starts
strictly after the last row served. Unlike OFFSET, that position does not move when new
activities arrive at the head of the history, so a client paging through while writes
land sees each row once and skips none, and the database seeks through the index instead
of counting past the rows already served.

The cursor is opaque to clients (base64url of a small versioned JSON document), so its
shape can change without breaking them; a cursor this service did not issue is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["Cursor", "InvalidCursorError", "decode_cursor", "encode_cursor"]

_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_LENGTH = 200


class InvalidCursorError(ValueError):
    """The text is not a cursor this service issued."""


@dataclass(frozen=True)
class Cursor:
    """The last row of a page: the next page holds rows strictly older than it."""

    activity_time: datetime
    activity_id: str


def encode_cursor(cursor: Cursor) -> str:
    """An opaque, URL-safe token for `cursor` (timestamps kept to the microsecond)."""
    delta = cursor.activity_time.astimezone(UTC) - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    document = json.dumps({"v": _VERSION, "t": micros, "i": cursor.activity_id},
                          separators=(",", ":"))
    return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> Cursor:
    """The cursor `token` encodes; InvalidCursorError if it was not made by encode_cursor."""
    if not token or len(token) > _MAX_LENGTH:
        raise InvalidCursorError("not a cursor issued by this service")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidCursorError("not a cursor issued by this service") from None
    if not isinstance(document, dict) or document.get("v") != _VERSION:
        raise InvalidCursorError("not a cursor issued by this service")
    micros, activity_id = document.get("t"), document.get("i")
    if not isinstance(micros, int) or isinstance(micros, bool) or not isinstance(
            activity_id, str) or not activity_id:
        raise InvalidCursorError("not a cursor issued by this service")
    try:
        activity_time = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise InvalidCursorError("not a cursor issued by this service") from None
    return Cursor(activity_time, activity_id)
