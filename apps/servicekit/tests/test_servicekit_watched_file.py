"""WatchedFile on temporary files: re-read on change, the default when absent, the last
good value when invalid."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from servicekit.watched_file import WatchedFile


class Parser:
    """Reads a whole number; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str) -> int:
        self.calls += 1
        return int(text)  # ValueError on anything else


def write(path: Path, text: str, mtime_ns: int = 1_000_000_000) -> None:
    """Swap a new inode in, as a ConfigMap update does, with a pinned mtime."""
    staged = path.with_suffix(".new")
    staged.write_text(text)
    os.utime(staged, ns=(mtime_ns, mtime_ns))
    os.replace(staged, path)


def test_the_value_is_the_parsed_file(tmp_path: Path) -> None:
    write(tmp_path / "n", "7")
    assert WatchedFile(tmp_path / "n", int, 0).current() == 7


def test_an_unchanged_file_is_not_parsed_again(tmp_path: Path) -> None:
    write(tmp_path / "n", "7")
    parser = Parser()
    watched = WatchedFile(tmp_path / "n", parser, 0)
    assert [watched.current(), watched.current()] == [7, 7]
    assert parser.calls == 1


def test_a_change_within_one_mtime_tick_is_seen(tmp_path: Path) -> None:
    write(tmp_path / "n", "7")
    watched = WatchedFile(tmp_path / "n", int, 0)
    watched.current()
    write(tmp_path / "n", "8")  # same mtime, another inode
    assert watched.current() == 8


def test_a_missing_file_gives_the_default_and_a_removed_one_goes_back_to_it(
        tmp_path: Path) -> None:
    watched = WatchedFile(tmp_path / "n", int, 0)
    assert watched.current() == 0
    write(tmp_path / "n", "7")
    assert watched.current() == 7
    (tmp_path / "n").unlink()
    assert watched.current() == 0


def test_an_invalid_file_is_logged_and_the_last_good_value_stays(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "n", "7")
    watched = WatchedFile(tmp_path / "n", int, 0, what="count file",
                          logger=logging.getLogger("test.count"))
    watched.current()
    with caplog.at_level(logging.ERROR, logger="test.count"):
        write(tmp_path / "n", "seven", 2_000_000_000)
        assert watched.current() == 7
    assert "count file ignored" in caplog.text
    assert "invalid literal" in caplog.text
