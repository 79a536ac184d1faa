"""A stage's log, bounded: what the store keeps of a chunk, the marker, the file name."""

from __future__ import annotations

import pytest

from shipyard.domain.stage_logs import cap_chunk, count_lines, log_file_name, truncation_marker


def test_lines_are_counted_by_their_newlines_and_a_last_unfinished_one() -> None:
    assert count_lines("") == 0
    assert count_lines("one\n") == 1
    assert count_lines("one\ntwo") == 2
    assert count_lines("\n\n") == 2
    assert count_lines("a\rb\x0cc\u2028d\n") == 1  # only \n ends a line


def test_a_chunk_within_the_cap_is_kept_whole() -> None:
    assert cap_chunk("a\nb\n", kept_before=8, cap=10) == cap_chunk("a\nb\n", kept_before=0,
                                                                   cap=None)
    capped = cap_chunk("a\nb\n", kept_before=8, cap=10)
    assert (capped.kept, capped.kept_lines, capped.dropped_lines) == ("a\nb\n", 2, 0)


def test_a_chunk_across_the_cap_keeps_the_lines_that_fit() -> None:
    capped = cap_chunk("a\nb\nc\nd", kept_before=8, cap=10)
    assert (capped.kept, capped.kept_lines, capped.dropped_lines) == ("a\nb\n", 2, 2)


def test_a_chunk_past_the_cap_is_dropped_whole() -> None:
    capped = cap_chunk("a\nb\n", kept_before=10, cap=10)
    assert (capped.kept, capped.kept_lines, capped.dropped_lines) == ("", 0, 2)
    # A cap lowered below what a log already holds keeps nothing more either.
    assert cap_chunk("a\n", kept_before=50, cap=10).dropped_lines == 1


def test_the_marker_says_how_many_lines_were_dropped_and_where_they_all_are() -> None:
    assert truncation_marker(1, "/h/logs/r/build.log") == (
        "truncated: 1 line dropped; the full log is in /h/logs/r/build.log\n")
    assert truncation_marker(20_000, None) == (
        "truncated: 20000 lines dropped; no full log was kept of this stage\n")


@pytest.mark.parametrize(("ref", "name"), [
    ("checkout", "checkout.log"),
    ("test:gateway", "test%3Agateway.log"),
    ("deploy:prod:gateway", "deploy%3Aprod%3Agateway.log"),
    ("canary_gateway.v2-a", "canary_gateway.v2-a.log"),
    ("../etc/passwd", "%2E.%2Fetc%2Fpasswd.log"),
    (".hidden", "%2Ehidden.log"),
])
def test_a_stage_ref_becomes_a_file_name_of_its_own(ref: str, name: str) -> None:
    assert log_file_name(ref) == name


def test_refs_that_differ_never_share_a_file() -> None:
    assert log_file_name("test:a") != log_file_name("test_a") != log_file_name("test%3Aa")


def test_a_stage_log_needs_a_ref() -> None:
    with pytest.raises(ValueError, match="needs the stage's ref"):
        log_file_name("")
