"""Pagination cursors on plain data: they round-trip exactly and refuse what they did not
make."""

import base64
from datetime import UTC, datetime

import pytest
from data.cursor import Cursor, InvalidCursorError, decode_cursor, encode_cursor

POSITION = Cursor(datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC), "a1b2c3")


def test_a_cursor_decodes_to_the_position_it_encodes_to_the_microsecond() -> None:
    assert decode_cursor(encode_cursor(POSITION)) == POSITION


def test_a_cursor_is_url_safe_text_without_padding() -> None:
    token = encode_cursor(POSITION)
    assert token.replace("-", "").replace("_", "").isalnum()


def test_a_position_in_another_time_zone_encodes_the_same_instant() -> None:
    elsewhere = POSITION.activity_time.astimezone(datetime.now().astimezone().tzinfo)
    decoded = decode_cursor(encode_cursor(Cursor(elsewhere, "a1b2c3")))
    assert decoded == POSITION and decoded.activity_time.tzinfo == UTC


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("token", [
    "",
    "not a cursor!",
    "x" * 201,
    _b64("[1, 2]"),
    _b64('{"v": 2, "t": 0, "i": "a"}'),
    _b64('{"v": 1, "t": "0", "i": "a"}'),
    _b64('{"v": 1, "t": true, "i": "a"}'),
    _b64('{"v": 1, "t": 0, "i": ""}'),
    _b64('{"v": 1, "t": 99999999999999999999, "i": "a"}'),
], ids=["empty", "not-base64", "too-long", "not-an-object", "other-version", "time-as-text",
        "time-as-bool", "empty-id", "time-out-of-range"])
def test_a_token_this_service_did_not_issue_is_refused(token: str) -> None:
    with pytest.raises(InvalidCursorError, match="not a cursor issued by this service"):
        decode_cursor(token)
