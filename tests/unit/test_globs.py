"""Glob patterns over branches, tags and paths, read as GitHub Actions reads them."""

from __future__ import annotations

import pytest

from shipyard.domain.globs import GlobSet, InvalidPattern


def matches(patterns: list[str], name: str) -> bool:
    return GlobSet.of(patterns).matches(name)


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("main", "main", True),
    ("main", "main2", False),
    ("release/*", "release/1.2", True),
    ("release/*", "release/1.2/hotfix", False),
    ("release/**", "release/1.2/hotfix", True),
    ("*", "feature/x", False),
    ("**", "feature/x", True),
    ("v?", "v1", True),
    ("v?", "v12", False),
    ("v[0-9].*", "v1.0", True),
    ("v[0-9].*", "vx.0", False),
    ("v[!0-9]*", "vx", True),
    ("v[!0-9]*", "v1", False),
    ("apps/**/*.py", "apps/gateway/gateway/api.py", True),
    ("apps/**/*.py", "apps/gateway/README.md", False),
    ("docs/*.md", "docs/a.b.md", True),
    ("a+b(c)", "a+b(c)", True),
    ("a.b", "axb", False),
])
def test_a_pattern_matches_as_documented(pattern: str, name: str, expected: bool) -> None:
    assert matches([pattern], name) is expected


def test_the_last_matching_pattern_decides() -> None:
    patterns = ["release/**", "!release/old-*", "release/old-but-gold"]
    assert matches(patterns, "release/2.0")
    assert not matches(patterns, "release/old-1")
    assert matches(patterns, "release/old-but-gold")


def test_an_exclusion_alone_includes_nothing() -> None:
    assert not matches(["!docs/**"], "apps/x.py")


def test_no_patterns_match_nothing_and_say_so() -> None:
    empty = GlobSet.of([])
    assert not empty.matches("main")
    assert not empty
    assert empty.describe() == "none set"


@pytest.mark.parametrize(("pattern", "problem"), [
    ("", "empty"), ("!", "empty"), (" main", "spaces"), ("main ", "spaces"),
    ("v[0-9", "never closes"), ("v[z-a]", "not a valid glob"),
])
def test_a_bad_pattern_is_refused_naming_it(pattern: str, problem: str) -> None:
    with pytest.raises(InvalidPattern, match=problem) as raised:
        GlobSet.of(["main", pattern])
    assert repr(pattern) in str(raised.value)
