"""The run list's page cursors (:mod:`shipyard.store.browse`): only one this code could have
handed out is taken; any other is a BadCursor (the API's 422), never a fault."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from shipyard.store.browse import BadCursor, decode_cursor


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_a_cursor_names_the_time_in_utc_and_the_id_of_the_last_run_shown():
    assert decode_cursor(cursor_of("2026-03-01T13:00:00+01:00|abc123")) == (
        datetime(2026, 3, 1, 12, tzinfo=UTC), "abc123")


@pytest.mark.parametrize("text", [
    "garbage", "2026-03-01T12:00:00|abc123", "2026-03-01T12:00:00+00:00|abc-123",
    # GET /api/runs?cursor=<these> answered 500: no UTC time is that near the ends of time.
    "0001-01-01T00:00:00+14:00|abcd", "9999-12-31T23:59:59-14:00|abcd"])
def test_anything_else_is_a_bad_cursor(text: str):
    with pytest.raises(BadCursor, match="is not a page cursor"):
        decode_cursor(cursor_of(text))
