"""Secret files: made once, mode 0600, refused when others could read them or they are
empty (on the real file system, in a temporary directory)."""

from __future__ import annotations

import itertools
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shipyard.adapters.secret_files import PrivateFileError, read_or_create_secret


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_missing_secret_is_made_once_readable_by_its_owner_only(tmp_path: Path):
    path = tmp_path / "home" / "key"
    made = itertools.count()
    first = read_or_create_secret(path, lambda: f"secret-{next(made)}", what="a key")
    again = read_or_create_secret(path, lambda: f"secret-{next(made)}", what="a key")
    assert first == again == "secret-0"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["key"]  # no drafts left behind


def test_processes_making_it_at_once_keep_one_secret(tmp_path: Path):
    path = tmp_path / "key"
    made = itertools.count()
    with ThreadPoolExecutor(8) as pool:
        seen = set(pool.map(lambda _: read_or_create_secret(
            path, lambda: f"secret-{next(made)}", what="a key"), range(32)))
    assert seen == {path.read_text().strip()}
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_a_secret_others_may_read_is_refused_with_the_fix(tmp_path: Path):
    path = tmp_path / "key"
    path.write_text("secret\n")
    os.chmod(path, 0o644)
    with pytest.raises(PrivateFileError, match=r"is mode 0644.*`chmod 600 .*key`"):
        read_or_create_secret(path, lambda: "new", what="a key")
    assert path.read_text() == "secret\n"  # nothing replaced


def test_an_empty_secret_file_is_an_error_not_an_empty_secret(tmp_path: Path):
    path = tmp_path / "key"
    path.touch(mode=0o600)
    with pytest.raises(PrivateFileError, match=r"a key.*is empty: delete it"):
        read_or_create_secret(path, lambda: "new", what="a key")
