"""Frames encode and decode losslessly, and a torn or damaged frame is reported where it
starts, so recovery can cut the file there."""

import struct

from streaming.records import HEADER_SIZE, Record, encode_record, split_frames

A = Record(offset=7, timestamp_ms=1_700_000_000_123, key="user-1", value=b'{"n":1}')
B = Record(offset=8, timestamp_ms=1_700_000_000_456, key=None, value=b"[1,2,3]")


def test_frames_decode_to_the_records_encoded() -> None:
    data = encode_record(A) + encode_record(B)
    split = split_frames(data)
    assert [f.record for f in split.frames] == [A, B]
    assert split.end == len(data) and split.corrupt is None


def test_frame_positions_include_the_base_position() -> None:
    first = encode_record(A)
    split = split_frames(first + encode_record(B), base=1000)
    assert [f.position for f in split.frames] == [1000, 1000 + len(first)]
    assert [f.size for f in split.frames] == [len(first), len(encode_record(B))]


def test_an_empty_key_is_not_a_missing_key() -> None:
    empty = Record(0, 0, "", b"null")
    assert split_frames(encode_record(empty)).frames[0].record.key == ""


def test_a_non_ascii_key_round_trips() -> None:
    keyed = Record(0, 0, "café-☕", b'"x"')
    assert split_frames(encode_record(keyed)).frames[0].record == keyed


def test_a_torn_last_frame_is_incomplete_not_corrupt() -> None:
    whole = encode_record(A)
    torn = encode_record(B)[:-3]
    split = split_frames(whole + torn)
    assert [f.record for f in split.frames] == [A]
    assert split.end == len(whole)
    assert split.corrupt is None


def test_a_torn_header_is_incomplete() -> None:
    split = split_frames(encode_record(A) + encode_record(B)[: HEADER_SIZE - 1])
    assert split.end == len(encode_record(A)) and split.corrupt is None


def test_a_flipped_bit_fails_the_crc_check_at_that_frame() -> None:
    first = encode_record(A)
    damaged = bytearray(encode_record(B))
    damaged[-1] ^= 0x01
    split = split_frames(first + bytes(damaged))
    assert [f.record for f in split.frames] == [A]
    assert split.end == len(first)
    assert split.corrupt is not None and "CRC" in split.corrupt


def test_zeros_where_a_frame_should_be_are_corrupt() -> None:
    split = split_frames(encode_record(A) + bytes(64))
    assert split.corrupt is not None and "impossible length" in split.corrupt


def test_an_unknown_format_version_is_refused() -> None:
    frame = bytearray(encode_record(A))
    struct.pack_into(">I", frame, 8, 2)
    split = split_frames(bytes(frame))
    assert split.frames == [] and split.corrupt is not None and "format" in split.corrupt
